//! Every class of malformed input, made by corrupting a copy of a real bundled file, gives its
//! typed error with the file and the offset, under every loading strategy, and never a panic.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use model_core::bundled::{self, MnistSplit};
use model_core::{DataError, LoadOptions, LoadStrategy, cifar, idx, image_folder};

const STRATEGIES: [LoadStrategy; 3] = [
    LoadStrategy::LoadAll,
    LoadStrategy::OnDemandNoCache,
    LoadStrategy::OnDemandCached { capacity: 4 },
];

struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Self {
        Scratch {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    fn options(&self, strategy: LoadStrategy) -> LoadOptions {
        LoadOptions::new(strategy).with_cache(model_core::Cache::new(self.path("cache")))
    }
    /// The real t10k images and labels, decompressed, as raw bytes.
    fn real_t10k() -> (Vec<u8>, Vec<u8>) {
        let (images, labels) = bundled::mnist_files(MnistSplit::Test);
        let cache = bundled::workspace_cache();
        (
            fs::read(cache.gunzip(&images).unwrap()).unwrap(),
            fs::read(cache.gunzip(&labels).unwrap()).unwrap(),
        )
    }
    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.path(name);
        fs::write(&p, bytes).unwrap();
        p
    }
    fn write_gz(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.path(name);
        let mut enc = flate2::write::GzEncoder::new(
            fs::File::create(&p).unwrap(),
            flate2::Compression::fast(),
        );
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap();
        p
    }
    /// Opens corrupted images with the real labels under every strategy; all must fail alike.
    fn open_images_all_ways(&self, images: &Path, labels: &Path) -> Vec<DataError> {
        STRATEGIES
            .iter()
            .map(|&s| {
                idx::open_pair(
                    "t",
                    images,
                    labels,
                    idx::mnist_class_names(),
                    &self.options(s),
                )
                .expect_err("a corrupted file must not open")
            })
            .collect()
    }
}

fn offset(e: &DataError) -> u64 {
    e.location()
        .unwrap_or_else(|| panic!("{e} has no location"))
        .offset
}

#[test]
fn idx_wrong_magic() {
    let s = Scratch::new();
    let (mut images, labels) = Scratch::real_t10k();
    images[2] = 0x09; // type code: not unsigned bytes
    let im = s.write("images", &images);
    let lb = s.write("labels", &labels);
    for e in s.open_images_all_ways(&im, &lb) {
        assert!(matches!(e, DataError::BadMagic { .. }), "{e}");
        assert_eq!(offset(&e), 0);
        assert_eq!(e.path().unwrap(), im);
        assert!(e.to_string().contains("0x00000803"), "{e}");
    }
    // Labels file given where the images file belongs.
    let e = idx::read_images(&lb).unwrap_err();
    assert!(matches!(e, DataError::BadMagic { .. }), "{e}");
}

#[test]
fn idx_wrong_magic_inside_gzip_names_the_decompressed_offset() {
    let s = Scratch::new();
    let (mut images, labels) = Scratch::real_t10k();
    images[3] = 0x02;
    let im = s.write_gz("images.gz", &images);
    let lb = s.write("labels", &labels);
    for e in s.open_images_all_ways(&im, &lb) {
        assert!(matches!(e, DataError::BadMagic { .. }), "{e}");
        let at = e.location().unwrap();
        assert_eq!(
            (at.offset, at.decompressed, at.path.as_path()),
            (0, true, im.as_path())
        );
        assert!(e.to_string().contains("decompressed"), "{e}");
    }
}

#[test]
fn idx_truncated_data() {
    let s = Scratch::new();
    let (images, labels) = Scratch::real_t10k();
    let cut = &images[..images.len() - 100];
    let im = s.write("images", cut);
    let lb = s.write("labels", &labels);
    for e in s.open_images_all_ways(&im, &lb) {
        assert!(matches!(e, DataError::Truncated { .. }), "{e}");
        assert_eq!(
            offset(&e),
            16 + 9_999 * 784,
            "the start of the first incomplete image"
        );
    }
}

#[test]
fn idx_truncated_header() {
    let s = Scratch::new();
    let (images, labels) = Scratch::real_t10k();
    let im = s.write("images", &images[..10]);
    let lb = s.write("labels", &labels);
    for e in s.open_images_all_ways(&im, &lb) {
        assert!(matches!(e, DataError::Truncated { .. }), "{e}");
        assert_eq!(offset(&e), 10);
    }
    let im = s.write("images2", &images[..3]);
    let e = idx::read_images(&im).unwrap_err();
    assert!(
        matches!(e, DataError::Truncated { .. }) && offset(&e) == 3,
        "{e}"
    );
}

#[test]
fn idx_truncated_gzip_stream() {
    let s = Scratch::new();
    let (images, labels) = bundled::mnist_files(MnistSplit::Test);
    let gz = fs::read(&images).unwrap();
    let im = s.write("images.gz", &gz[..gz.len() / 2]);
    for strategy in STRATEGIES {
        let e = idx::open_pair(
            "t",
            &im,
            &labels,
            idx::mnist_class_names(),
            &s.options(strategy),
        )
        .unwrap_err();
        match &e {
            DataError::Decompress { path, offset, .. } => {
                assert_eq!(path, &im);
                assert!(*offset > 0, "some bytes decompressed before the cut");
            }
            other => panic!("expected a decompression error, got {other}"),
        }
    }
}

#[test]
fn idx_header_count_disagrees_with_file_length() {
    let s = Scratch::new();
    let (images, labels) = Scratch::real_t10k();
    let lb = s.write("labels", &labels);
    for declared in [10_001u32, 9_999, 60_000] {
        let mut bad = images.clone();
        bad[4..8].copy_from_slice(&declared.to_be_bytes());
        let im = s.write(&format!("images-{declared}"), &bad);
        for e in s.open_images_all_ways(&im, &lb) {
            match &e {
                DataError::LengthMismatch {
                    at,
                    declared: d,
                    actual_bytes,
                    ..
                } => {
                    assert_eq!(
                        (at.offset, *d, *actual_bytes),
                        (4, declared as u64, 7_840_000)
                    );
                }
                other => panic!("expected a length mismatch, got {other}"),
            }
        }
    }
    // The same for a labels file.
    let mut bad = labels.clone();
    bad[4..8].copy_from_slice(&20_000u32.to_be_bytes());
    let lb2 = s.write("labels-bad", &bad);
    let e = idx::read_labels(&lb2, 10).unwrap_err();
    assert!(
        matches!(e, DataError::LengthMismatch { .. }) && offset(&e) == 4,
        "{e}"
    );
}

#[test]
fn idx_zero_sized_dimension() {
    let s = Scratch::new();
    let (images, labels) = Scratch::real_t10k();
    let lb = s.write("labels", &labels);
    for (field_offset, field) in [(4usize, "image count"), (8, "rows"), (12, "columns")] {
        let mut bad = images.clone();
        bad[field_offset..field_offset + 4].copy_from_slice(&0u32.to_be_bytes());
        let im = s.write(&format!("images-{field_offset}"), &bad);
        for e in s.open_images_all_ways(&im, &lb) {
            match &e {
                DataError::ZeroDimension { at, field: f } => {
                    assert_eq!((at.offset, *f), (field_offset as u64, field));
                }
                other => panic!("expected a zero dimension, got {other}"),
            }
        }
    }
}

#[test]
fn idx_images_and_labels_counts_differ() {
    let s = Scratch::new();
    let (images, _) = Scratch::real_t10k();
    let im = s.write("images", &images);
    let (_, train_labels) = bundled::mnist_files(MnistSplit::Train);
    for e in s.open_images_all_ways(&im, &train_labels) {
        match &e {
            DataError::CountMismatch {
                images: n_im,
                labels: n_lb,
                images_path,
                labels_path,
            } => {
                assert_eq!((*n_im, *n_lb), (10_000, 60_000));
                assert_eq!((images_path, labels_path), (&im, &train_labels));
            }
            other => panic!("expected a count mismatch, got {other}"),
        }
    }
}

#[test]
fn idx_label_out_of_range() {
    let s = Scratch::new();
    let (images, mut labels) = Scratch::real_t10k();
    labels[8 + 1234] = 10;
    let im = s.write("images", &images);
    let lb = s.write("labels", &labels);
    for e in s.open_images_all_ways(&im, &lb) {
        match &e {
            DataError::LabelOutOfRange { at, label, classes } => {
                assert_eq!((at.offset, *label, *classes), (8 + 1234, 10, 10));
                assert_eq!(at.path, lb);
            }
            other => panic!("expected a label out of range, got {other}"),
        }
    }
}

/// A CIFAR-10 binary file of real records: the 20 exact PNGs.
fn real_cifar_bin() -> Vec<u8> {
    let exact = bundled::cifar10_exact(&LoadOptions::new(LoadStrategy::LoadAll)).unwrap();
    let mut out = Vec::new();
    let mut buf = vec![0u8; cifar::SHAPE.len()];
    for i in 0..exact.len() {
        exact.read_sample(i, &mut buf).unwrap();
        cifar::write_records(&mut out, [(exact.label(i), buf.as_slice())]).unwrap();
    }
    out
}

#[test]
fn cifar_truncated_record() {
    let s = Scratch::new();
    let bytes = real_cifar_bin();
    let p = s.write("test_batch.bin", &bytes[..bytes.len() - 500]);
    for strategy in STRATEGIES {
        let e = cifar::open("t", &[p.clone()], &s.options(strategy)).unwrap_err();
        assert!(matches!(e, DataError::Truncated { .. }), "{e}");
        assert_eq!(offset(&e), 19 * cifar::RECORD as u64);
    }
}

#[test]
fn cifar_label_out_of_range() {
    let s = Scratch::new();
    let mut bytes = real_cifar_bin();
    bytes[7 * cifar::RECORD] = 200;
    let p = s.write("data_batch_1.bin", &bytes);
    for strategy in STRATEGIES {
        let e = cifar::open("t", &[p.clone()], &s.options(strategy)).unwrap_err();
        match &e {
            DataError::LabelOutOfRange { at, label, .. } => {
                assert_eq!((at.offset, *label), (7 * cifar::RECORD as u64, 200));
            }
            other => panic!("expected a label out of range, got {other}"),
        }
    }
}

#[test]
fn cifar_empty_file() {
    let s = Scratch::new();
    let p = s.write("test_batch.bin", &[]);
    let e = cifar::open("t", &[p], &s.options(LoadStrategy::LoadAll)).unwrap_err();
    assert!(
        matches!(e, DataError::ZeroDimension { .. }) && offset(&e) == 0,
        "{e}"
    );
}

/// A small image folder copied from the real CIFAR-10 JPEGs: two classes, three images each.
fn real_image_folder(s: &Scratch) -> PathBuf {
    let src = bundled::cifar10_test_folder(&bundled::workspace_cache()).unwrap();
    let root = s.path("images");
    for class in ["cat", "dog"] {
        fs::create_dir_all(root.join(class)).unwrap();
        for k in 0..3 {
            let name = format!("{k:04}.jpg");
            fs::copy(src.join(class).join(&name), root.join(class).join(&name)).unwrap();
        }
    }
    root
}

#[test]
fn image_folder_reads_a_copy_of_real_images() {
    let s = Scratch::new();
    let root = real_image_folder(&s);
    let d = image_folder::open(&root, &s.options(LoadStrategy::LoadAll)).unwrap();
    assert_eq!(d.class_names(), &["cat".to_string(), "dog".to_string()]);
    assert_eq!(d.labels(), &[0, 0, 0, 1, 1, 1]);
}

#[test]
fn image_folder_empty() {
    let s = Scratch::new();
    let root = s.path("empty");
    fs::create_dir_all(&root).unwrap();
    let e = image_folder::open(&root, &s.options(LoadStrategy::LoadAll)).unwrap_err();
    assert!(
        matches!(&e, DataError::EmptyFolder { path, .. } if path == &root),
        "{e}"
    );
    // A class folder without images names that folder.
    let root = real_image_folder(&s);
    fs::create_dir_all(root.join("empty-class")).unwrap();
    let e = image_folder::open(&root, &s.options(LoadStrategy::LoadAll)).unwrap_err();
    assert!(
        matches!(&e, DataError::EmptyFolder { path, .. } if path == &root.join("empty-class")),
        "{e}"
    );
}

#[test]
fn image_folder_unreadable() {
    let s = Scratch::new();
    let e = image_folder::open(&s.path("missing"), &s.options(LoadStrategy::LoadAll)).unwrap_err();
    assert!(
        matches!(&e, DataError::Io { path, .. } if path == &s.path("missing")),
        "{e}"
    );
}

#[test]
fn image_folder_non_image_file() {
    let s = Scratch::new();
    let root = real_image_folder(&s);
    let notes = root.join("cat/notes.txt");
    fs::write(&notes, "not an image").unwrap();
    let e = image_folder::open(&root, &s.options(LoadStrategy::LoadAll)).unwrap_err();
    assert!(
        matches!(&e, DataError::NotAnImage { path, .. } if path == &notes),
        "{e}"
    );
    fs::remove_file(&notes).unwrap();
    // A file named like an image that is not one: a truncated real JPEG.
    let bad = root.join("dog/0001.jpg");
    let bytes = fs::read(&bad).unwrap();
    fs::write(&bad, &bytes[..bytes.len() / 3]).unwrap();
    for strategy in STRATEGIES {
        let result = image_folder::open(&root, &s.options(strategy)).and_then(|d| {
            let mut buf = vec![0u8; d.shape().len()];
            (0..d.len()).try_for_each(|i| d.read_sample(i, &mut buf))
        });
        let e = result.unwrap_err();
        assert!(
            matches!(&e, DataError::NotAnImage { path, .. } if path == &bad),
            "{strategy}: {e}"
        );
    }
}

#[test]
fn image_folder_images_of_differing_sizes() {
    let s = Scratch::new();
    let root = real_image_folder(&s);
    // A real image, downscaled to 16x16, among 32x32 ones.
    let odd = root.join("dog/0002.jpg");
    let small =
        image::open(&odd)
            .unwrap()
            .resize_exact(16, 16, image::imageops::FilterType::Triangle);
    let odd_png = root.join("dog/0002.png");
    small.save(&odd_png).unwrap();
    fs::remove_file(&odd).unwrap();
    for strategy in STRATEGIES {
        let result = image_folder::open(&root, &s.options(strategy)).and_then(|d| {
            let mut buf = vec![0u8; d.shape().len()];
            (0..d.len()).try_for_each(|i| d.read_sample(i, &mut buf))
        });
        match result.unwrap_err() {
            DataError::ImageSizeMismatch {
                path,
                expected,
                found,
                ..
            } => {
                assert_eq!(path, odd_png);
                assert_eq!((expected.height, found.height), (32, 16));
            }
            other => panic!("expected a size mismatch, got {other}"),
        }
    }
}

#[test]
fn unknown_layout_is_named() {
    let s = Scratch::new();
    let p = s.write("data.csv", b"a,b\n");
    let e = bundled::open_path(&p, &s.options(LoadStrategy::LoadAll)).unwrap_err();
    assert!(
        matches!(&e, DataError::UnknownLayout { path, .. } if path == &p),
        "{e}"
    );
}
