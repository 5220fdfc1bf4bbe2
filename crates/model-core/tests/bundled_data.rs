//! The readers on the real bundled files: counts, labels, checksums, and the three loading
//! strategies agreeing byte for byte.

use std::collections::BTreeMap;
use std::io::Read;

use model_core::bundled::{self, MnistSplit};
use model_core::{Batcher, LoadOptions, LoadStrategy, Normalization, cifar, idx, image_folder};

fn options(strategy: LoadStrategy) -> LoadOptions {
    LoadOptions::new(strategy).with_cache(bundled::workspace_cache())
}

#[test]
fn bundled_files_match_their_recorded_checksums() {
    let dir = bundled::datasets_dir();
    let sums = std::fs::read_to_string(dir.join("SHA256SUMS")).unwrap();
    let mut checked = 0;
    for line in sums.lines().filter(|l| !l.trim().is_empty()) {
        let (sha, rel) = line.split_once("  ").unwrap();
        assert_eq!(
            model_core::cache::sha256_file(&dir.join(rel)).unwrap(),
            sha,
            "{rel}"
        );
        checked += 1;
    }
    assert_eq!(
        checked, 30,
        "4 MNIST files, the CIFAR-10 archive, 20 exact PNGs and 5 files of weights/"
    );
}

#[test]
fn mnist_train_has_the_published_label_counts() {
    let train = bundled::mnist(MnistSplit::Train, &options(LoadStrategy::LoadAll)).unwrap();
    assert_eq!(train.len(), 60_000);
    assert_eq!(train.shape(), model_core::SampleShape::new(1, 28, 28));
    assert_eq!(
        train.label_counts(),
        vec![5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    );
    // MNIST's customary normalisation constants come from this very set.
    let norm = Normalization::measure(&train).unwrap();
    assert!(
        (norm.mean[0] - 0.1307).abs() < 5e-4,
        "mean {}",
        norm.mean[0]
    );
    assert!((norm.std[0] - 0.3081).abs() < 5e-4, "std {}", norm.std[0]);
}

#[test]
fn mnist_t10k_has_10000_images() {
    let test = bundled::mnist(MnistSplit::Test, &options(LoadStrategy::LoadAll)).unwrap();
    assert_eq!(test.len(), 10_000);
    assert_eq!(
        test.label_counts(),
        vec![980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    );
}

fn md5_of_gunzipped(path: &std::path::Path) -> String {
    use md5::{Digest, Md5};
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_end(&mut bytes)
        .unwrap();
    hex::encode(Md5::digest(&bytes))
}

#[test]
fn cached_decompressed_mnist_is_the_canonical_file() {
    // PROVENANCE.md: the decompressed content is the canonical distribution, by md5.
    let (images, labels) = bundled::mnist_files(MnistSplit::Test);
    let cache = bundled::workspace_cache();
    let raw = cache.gunzip(&images).unwrap();
    let mut bytes = Vec::new();
    std::fs::File::open(&raw)
        .unwrap()
        .read_to_end(&mut bytes)
        .unwrap();
    use md5::{Digest, Md5};
    assert_eq!(
        hex::encode(Md5::digest(&bytes)),
        "2646ac647ad5339dbf082846283269ea"
    );
    assert_eq!(
        md5_of_gunzipped(&labels),
        "27ae3e4e09519cfbb04c329615203637"
    );
    // A second call reuses the verified file.
    assert_eq!(cache.gunzip(&images).unwrap(), raw);
}

#[test]
fn a_tampered_cache_file_is_recreated() {
    let dir = tempfile::tempdir().unwrap();
    let cache = model_core::Cache::new(dir.path());
    let (_, labels) = bundled::mnist_files(MnistSplit::Test);
    let raw = cache.gunzip(&labels).unwrap();
    let good = std::fs::read(&raw).unwrap();
    let mut bad = good.clone();
    bad[100] ^= 0xff;
    std::fs::write(&raw, &bad).unwrap();
    let again = cache.gunzip(&labels).unwrap();
    assert_eq!(std::fs::read(again).unwrap(), good);
}

#[test]
fn cifar10_test_folder_has_1000_images_per_class() {
    let test = bundled::cifar10_test(&options(LoadStrategy::LoadAll)).unwrap();
    assert_eq!(test.len(), 10_000);
    assert_eq!(test.shape(), cifar::SHAPE);
    assert_eq!(test.label_counts(), vec![1000; 10]);
    assert_eq!(test.class_names(), cifar::class_names().as_slice());
}

#[test]
fn exact_pngs_decode_to_the_labels_in_their_names_and_match_the_jpegs() {
    let pngs = bundled::cifar10_exact_pngs().unwrap();
    assert_eq!(pngs.len(), 20);
    assert_eq!(
        pngs.iter().map(|p| p.test_index).collect::<Vec<_>>(),
        (0..20).collect::<Vec<_>>()
    );
    let exact = bundled::cifar10_exact(&options(LoadStrategy::LoadAll)).unwrap();
    assert_eq!(exact.len(), 20);
    assert_eq!(exact.shape(), cifar::SHAPE);
    for (i, p) in pngs.iter().enumerate() {
        assert_eq!(exact.label(i), p.label, "{}", p.path.display());
    }
    // The test set's first labels, known from CIFAR-10: cat ship ship airplane frog ...
    assert_eq!(&exact.labels()[..5], &[3, 8, 8, 0, 6]);
    // The PNG with test index i and label L is the k-th JPEG of class L, k counting the earlier
    // test images of that class: the lossy JPEG must be close to the exact image.
    let folder = bundled::cifar10_test_folder(&bundled::workspace_cache()).unwrap();
    let mut seen: BTreeMap<u8, usize> = BTreeMap::new();
    let mut png = vec![0u8; cifar::SHAPE.len()];
    for (i, p) in pngs.iter().enumerate() {
        let k = *seen.entry(p.label).and_modify(|k| *k += 1).or_insert(0);
        let class = &cifar::class_names()[p.label as usize];
        let jpeg_path = folder.join(class).join(format!("{k:04}.jpg"));
        let (shape, jpeg) = image_folder::decode(&jpeg_path, 3).unwrap();
        assert_eq!(shape, cifar::SHAPE);
        exact.read_sample(i, &mut png).unwrap();
        let mae: f64 = png
            .iter()
            .zip(&jpeg)
            .map(|(&a, &b)| (a as f64 - b as f64).abs())
            .sum::<f64>()
            / png.len() as f64;
        assert!(
            mae < 15.0,
            "{} vs {}: mean abs error {mae}",
            p.path.display(),
            jpeg_path.display()
        );
    }
}

#[test]
fn cifar_binary_records_written_from_the_real_images_read_back_exactly() {
    let jpegs = bundled::cifar10_test(&options(LoadStrategy::LoadAll)).unwrap();
    let exact = bundled::cifar10_exact(&options(LoadStrategy::LoadAll)).unwrap();
    let picks: Vec<usize> = (0..jpegs.len()).step_by(97).collect();
    let mut samples = Vec::new();
    let mut buf = vec![0u8; cifar::SHAPE.len()];
    for i in 0..exact.len() {
        exact.read_sample(i, &mut buf).unwrap();
        samples.push((exact.label(i), buf.clone()));
    }
    for &i in &picks {
        jpegs.read_sample(i, &mut buf).unwrap();
        samples.push((jpegs.label(i), buf.clone()));
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("test_batch.bin");
    cifar::write_records(
        std::fs::File::create(&path).unwrap(),
        samples.iter().map(|(l, p)| (*l, p.as_slice())),
    )
    .unwrap();
    assert_eq!(
        std::fs::metadata(&path).unwrap().len() as usize,
        samples.len() * cifar::RECORD
    );
    for strategy in [
        LoadStrategy::LoadAll,
        LoadStrategy::OnDemandNoCache,
        LoadStrategy::OnDemandCached { capacity: 8 },
    ] {
        let splits = bundled::open_path(dir.path(), &options(strategy)).unwrap();
        let read = splits.train;
        assert_eq!(read.len(), samples.len());
        for (i, (label, pixels)) in samples.iter().enumerate() {
            assert_eq!(read.label(i), *label);
            read.read_sample(i, &mut buf).unwrap();
            assert_eq!(&buf, pixels, "sample {i} under {strategy}");
        }
    }
}

#[test]
fn idx_writer_round_trips_the_real_test_set() {
    let test = bundled::mnist(MnistSplit::Test, &options(LoadStrategy::LoadAll)).unwrap();
    let mut pixels = vec![0u8; test.len() * 784];
    test.read_samples(&(0..test.len()).collect::<Vec<_>>(), &mut pixels)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("t10k-images-idx3-ubyte");
    let labels = dir.path().join("t10k-labels-idx1-ubyte");
    idx::write_images(std::fs::File::create(&images).unwrap(), 28, 28, &pixels).unwrap();
    idx::write_labels(std::fs::File::create(&labels).unwrap(), test.labels()).unwrap();
    let (canonical, _) = bundled::mnist_files(MnistSplit::Test);
    let raw = bundled::workspace_cache().gunzip(&canonical).unwrap();
    assert_eq!(
        std::fs::read(&images).unwrap(),
        std::fs::read(raw).unwrap(),
        "byte-identical to the canonical file"
    );
    let back = idx::read_images(&images).unwrap();
    assert_eq!((back.count, back.rows, back.cols), (10_000, 28, 28));
    assert_eq!(back.pixels, pixels);
    assert_eq!(idx::read_labels(&labels, 10).unwrap(), test.labels());
}

fn all_batches(
    dataset: &model_core::Dataset,
    batcher: &Batcher,
    epochs: u64,
) -> Vec<model_core::HostBatch> {
    (0..epochs)
        .flat_map(|e| {
            batcher
                .host_batches(dataset, e)
                .map(|b| b.unwrap())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn the_three_strategies_give_identical_batches_on_mnist() {
    let batcher = Batcher::new(64, 3, Normalization::mnist());
    let strategies = [
        LoadStrategy::LoadAll,
        LoadStrategy::OnDemandNoCache,
        LoadStrategy::OnDemandCached { capacity: 500 },
    ];
    let mut reference = None;
    for strategy in strategies {
        let test = bundled::mnist(MnistSplit::Test, &options(strategy)).unwrap();
        let sub = test.stratified_subset(2_000, 9).unwrap();
        let batches = all_batches(&sub, &batcher, 2);
        assert_eq!(batches.len(), 2 * 32);
        match &reference {
            None => reference = Some(batches),
            Some(r) => assert!(r == &batches, "{strategy} differs from load_all"),
        }
    }
}

#[test]
fn the_three_strategies_give_identical_batches_on_the_cifar_jpegs() {
    let batcher = Batcher::new(64, 11, Normalization::cifar10());
    let mut reference = None;
    for strategy in [
        LoadStrategy::LoadAll,
        LoadStrategy::OnDemandNoCache,
        LoadStrategy::OnDemandCached { capacity: 100 },
    ] {
        let test = bundled::cifar10_test(&options(strategy)).unwrap();
        let sub = test.stratified_subset(640, 5).unwrap();
        let batches = all_batches(&sub, &batcher, 1);
        match &reference {
            None => reference = Some(batches),
            Some(r) => assert!(r == &batches, "{strategy} differs from load_all"),
        }
    }
}

#[test]
fn batches_become_normalised_tensors() {
    let test = bundled::mnist(MnistSplit::Test, &options(LoadStrategy::LoadAll)).unwrap();
    let batcher = Batcher::new(64, 1, Normalization::mnist()).in_order();
    let host = batcher
        .assemble(&test, &batcher.plan(test.len(), 0)[0])
        .unwrap();
    let device = burn::prelude::Device::flex();
    let batch = batcher.to_tensors(&host, &device).unwrap();
    assert_eq!(batch.images.dims(), [64, 1, 28, 28]);
    assert_eq!(batch.labels.dims(), [64]);
    let labels: Vec<i64> = batch
        .labels
        .into_data()
        .convert::<i64>()
        .try_to_vec::<i64>()
        .unwrap();
    assert_eq!(
        labels,
        test.labels()[..64]
            .iter()
            .map(|&l| l as i64)
            .collect::<Vec<_>>()
    );
    let values: Vec<f32> = batch.images.into_data().try_to_vec::<f32>().unwrap();
    let zero = (0.0 - 0.1307) / 0.3081;
    let one = (1.0 - 0.1307) / 0.3081;
    assert!(values.iter().all(|&v| v >= zero - 1e-5 && v <= one + 1e-5));
    assert!(
        (values[0] - zero).abs() < 1e-6,
        "the corner pixel of an MNIST digit is black"
    );
}

#[test]
fn mean_images_per_label_differ_and_average_to_the_overall_mean() {
    let test = bundled::mnist(MnistSplit::Test, &options(LoadStrategy::LoadAll)).unwrap();
    let means = test.mean_images().unwrap();
    assert_eq!(means.per_label.len(), 10);
    assert_eq!(means.overall.count, 10_000);
    let counts = test.label_counts();
    for p in 0..784 {
        let weighted: f64 = means
            .per_label
            .iter()
            .zip(&counts)
            .map(|(m, &c)| m.pixels[p] as f64 * c as f64)
            .sum::<f64>()
            / 10_000.0;
        assert!((weighted - means.overall.pixels[p] as f64).abs() < 1e-3);
    }
    // The mean "1" is thin: it has less ink than the mean "0".
    let ink = |l: usize| {
        means.per_label[l]
            .pixels
            .iter()
            .map(|&v| v as f64)
            .sum::<f64>()
    };
    assert!(
        ink(1) < ink(0) * 0.6,
        "ink of 1: {}, of 0: {}",
        ink(1),
        ink(0)
    );
}

#[test]
fn stratified_subset_of_mnist_keeps_the_label_shares() {
    let train = bundled::mnist(MnistSplit::Train, &options(LoadStrategy::LoadAll)).unwrap();
    let sub = train.stratified_subset(1_000, 42).unwrap();
    assert_eq!(sub.len(), 1_000);
    for (full, part) in train.label_counts().iter().zip(sub.label_counts()) {
        let share = *full as f64 * 1_000.0 / 60_000.0;
        assert!((part as f64 - share).abs() < 1.0, "{part} vs {share}");
    }
    assert_eq!(
        sub.labels(),
        train.stratified_subset(1_000, 42).unwrap().labels(),
        "seeded"
    );
    assert_ne!(
        train.stratified_indices(1_000, 42).unwrap(),
        train.stratified_indices(1_000, 43).unwrap(),
        "another seed picks other samples"
    );
}
