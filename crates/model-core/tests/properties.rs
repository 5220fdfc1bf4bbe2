//! Property tests of the data layer: writers and readers round-trip arbitrary datasets, readers
//! never panic on arbitrary or mutated bytes, the three loading strategies give identical
//! batches, and stratified subsets keep the label proportions.

use std::fs;
use std::path::PathBuf;
use std::sync::Arc;

use model_core::{
    Batcher, Cache, DataError, Dataset, InMemory, LoadOptions, LoadStrategy, Normalization,
    SampleShape, cifar, idx,
};
use proptest::prelude::*;

fn scratch() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn options(dir: &tempfile::TempDir, strategy: LoadStrategy) -> LoadOptions {
    LoadOptions::new(strategy).with_cache(Cache::new(dir.path().join("cache")))
}

/// An arbitrary small grey dataset: (rows, cols, pixels, labels).
fn grey_dataset() -> impl Strategy<Value = (usize, usize, Vec<u8>, Vec<u8>)> {
    (1usize..40, 1usize..9, 1usize..9).prop_flat_map(|(n, rows, cols)| {
        (
            Just(rows),
            Just(cols),
            proptest::collection::vec(any::<u8>(), n * rows * cols),
            proptest::collection::vec(0u8..10, n),
        )
    })
}

fn write_idx(
    dir: &tempfile::TempDir,
    rows: usize,
    cols: usize,
    pixels: &[u8],
    labels: &[u8],
    gz: bool,
) -> (PathBuf, PathBuf) {
    let suffix = if gz { ".gz" } else { "" };
    let im = dir.path().join(format!("train-images-idx3-ubyte{suffix}"));
    let lb = dir.path().join(format!("train-labels-idx1-ubyte{suffix}"));
    let mut a = Vec::new();
    let mut b = Vec::new();
    idx::write_images(&mut a, rows, cols, pixels).unwrap();
    idx::write_labels(&mut b, labels).unwrap();
    for (path, bytes) in [(&im, a), (&lb, b)] {
        if gz {
            use std::io::Write;
            let mut enc = flate2::write::GzEncoder::new(
                fs::File::create(path).unwrap(),
                flate2::Compression::fast(),
            );
            enc.write_all(&bytes).unwrap();
            enc.finish().unwrap();
        } else {
            fs::write(path, bytes).unwrap();
        }
    }
    (im, lb)
}

fn all_pixels(d: &Dataset) -> Vec<u8> {
    let mut out = vec![0u8; d.len() * d.shape().len()];
    d.read_samples(&(0..d.len()).collect::<Vec<_>>(), &mut out)
        .unwrap();
    out
}

/// Every way a reader may answer arbitrary input: a value or a typed error, never a panic.
fn read_everything(dir: &tempfile::TempDir, path: &std::path::Path) {
    let _ = idx::read_images(path);
    let _ = idx::read_labels(path, 10);
    let _ = idx::IdxImagesFile::open(path);
    for strategy in [LoadStrategy::LoadAll, LoadStrategy::OnDemandNoCache] {
        let _ = idx::open_pair(
            "x",
            path,
            path,
            idx::mnist_class_names(),
            &options(dir, strategy),
        );
        if let Ok(d) = cifar::open("x", &[path.to_path_buf()], &options(dir, strategy)) {
            all_pixels(&d);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn idx_round_trips((rows, cols, pixels, labels) in grey_dataset(), gz in any::<bool>()) {
        let dir = scratch();
        let (im, lb) = write_idx(&dir, rows, cols, &pixels, &labels, gz);
        let back = idx::read_images(&im).unwrap();
        prop_assert_eq!((back.count, back.rows, back.cols), (labels.len(), rows, cols));
        prop_assert_eq!(&back.pixels, &pixels);
        prop_assert_eq!(idx::read_labels(&lb, 10).unwrap(), labels.clone());
        for strategy in [LoadStrategy::LoadAll, LoadStrategy::OnDemandNoCache, LoadStrategy::OnDemandCached { capacity: 3 }] {
            let d = idx::open_pair("p", &im, &lb, idx::mnist_class_names(), &options(&dir, strategy)).unwrap();
            prop_assert_eq!(d.shape(), SampleShape::new(1, rows, cols));
            prop_assert_eq!(d.labels(), labels.as_slice());
            prop_assert_eq!(all_pixels(&d), pixels.clone());
        }
    }

    #[test]
    fn cifar_round_trips(records in proptest::collection::vec((0u8..10, proptest::collection::vec(any::<u8>(), 3072)), 1..6)) {
        let dir = scratch();
        let path = dir.path().join("data_batch_1.bin");
        let mut bytes = Vec::new();
        cifar::write_records(&mut bytes, records.iter().map(|(l, p)| (*l, p.as_slice()))).unwrap();
        fs::write(&path, bytes).unwrap();
        for strategy in [LoadStrategy::LoadAll, LoadStrategy::OnDemandNoCache] {
            let d = cifar::open("p", &[path.clone()], &options(&dir, strategy)).unwrap();
            prop_assert_eq!(d.len(), records.len());
            let pixels = all_pixels(&d);
            for (i, (label, p)) in records.iter().enumerate() {
                prop_assert_eq!(d.label(i), *label);
                prop_assert_eq!(&pixels[i * 3072..(i + 1) * 3072], p.as_slice());
            }
        }
    }

    #[test]
    fn readers_never_panic_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let dir = scratch();
        let path = dir.path().join("input");
        fs::write(&path, &bytes).unwrap();
        read_everything(&dir, &path);
    }

    #[test]
    fn readers_never_panic_on_mutated_valid_files(
        (rows, cols, pixels, labels) in grey_dataset(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
        gz in any::<bool>(),
    ) {
        let dir = scratch();
        let (im, lb) = write_idx(&dir, rows, cols, &pixels, &labels, false);
        for path in [im, lb] {
            let mut bytes = fs::read(&path).unwrap();
            for (at, value) in &edits {
                let i = at.index(bytes.len());
                bytes[i] = *value;
            }
            if truncate {
                bytes.truncate(cut.index(bytes.len() + 1));
            }
            if gz {
                use std::io::Write;
                let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                enc.write_all(&bytes).unwrap();
                bytes = enc.finish().unwrap();
            }
            fs::write(&path, &bytes).unwrap();
            read_everything(&dir, &path);
        }
    }

    #[test]
    fn the_three_strategies_give_identical_batches(
        (rows, cols, pixels, labels) in grey_dataset(),
        batch_size in 1usize..9,
        seed in any::<u64>(),
        capacity in 0usize..12,
        gz in any::<bool>(),
    ) {
        let dir = scratch();
        let (im, lb) = write_idx(&dir, rows, cols, &pixels, &labels, gz);
        let batcher = Batcher::new(batch_size, seed, Normalization::unit(1));
        let mut reference: Option<Vec<model_core::HostBatch>> = None;
        for strategy in [LoadStrategy::LoadAll, LoadStrategy::OnDemandNoCache, LoadStrategy::OnDemandCached { capacity }] {
            let d = idx::open_pair("p", &im, &lb, idx::mnist_class_names(), &options(&dir, strategy)).unwrap();
            let batches: Vec<_> = (0..2).flat_map(|e| batcher.host_batches(&d, e).map(|b| b.unwrap()).collect::<Vec<_>>()).collect();
            match &reference {
                None => reference = Some(batches),
                Some(r) => prop_assert!(r == &batches, "{} differs", strategy),
            }
        }
        // Every sample appears once per epoch.
        let r = reference.unwrap();
        let per_epoch = labels.len().div_ceil(batch_size);
        let mut seen: Vec<usize> = r[..per_epoch].iter().flat_map(|b| b.items.clone()).collect();
        seen.sort_unstable();
        prop_assert_eq!(seen, (0..labels.len()).collect::<Vec<_>>());
    }

    #[test]
    fn stratified_subsets_keep_the_label_proportions(
        labels in proptest::collection::vec(0u8..6, 1..300),
        fraction in 0.0f64..=1.0,
        seed in any::<u64>(),
    ) {
        let shape = SampleShape::new(1, 1, 1);
        let source = Arc::new(InMemory::new(shape, vec![0; labels.len()], "test").unwrap());
        let names = (0..6).map(|c| c.to_string()).collect();
        let d = Dataset::new("s", names, source, labels.clone()).unwrap();
        let n = (labels.len() as f64 * fraction).round() as usize;
        let sub = d.stratified_subset(n, seed).unwrap();
        prop_assert_eq!(sub.len(), n);
        for (full, part) in d.label_counts().iter().zip(sub.label_counts()) {
            let share = *full as f64 * n as f64 / labels.len() as f64;
            prop_assert!((part as f64 - share).abs() < 1.0, "{} vs share {}", part, share);
        }
        let idx = d.stratified_indices(n, seed).unwrap();
        prop_assert!(idx.windows(2).all(|w| w[0] < w[1]), "sorted, no repeats");
        prop_assert_eq!(idx, d.stratified_indices(n, seed).unwrap(), "seeded");
        let too_many = matches!(d.stratified_subset(labels.len() + 1, seed), Err(DataError::InvalidRequest { .. }));
        prop_assert!(too_many, "a subset larger than the dataset is refused");
    }
}
