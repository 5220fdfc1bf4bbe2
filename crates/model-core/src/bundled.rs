//! The datasets the project ships in `datasets/`, and opening any dataset by name or path.
//!
//! `datasets/` holds real MNIST (IDX, gzip) and the CIFAR-10 test images (a `.tar.gz` of JPEGs,
//! extracted once into the cache and verified by checksum) plus 20 exact PNGs. Nothing is
//! downloaded; see `datasets/PROVENANCE.md`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::cache::{CACHE_ENV, Cache};
use crate::dataset::Dataset;
use crate::error::{DataError, Result};
use crate::loader::LoadOptions;
use crate::{cifar, idx, image_folder};

/// The environment variable that points at another `datasets/` folder.
pub const DATASETS_ENV: &str = "NN_CHECKLIST_DATASETS";

/// The bundled `datasets/` folder: `$NN_CHECKLIST_DATASETS`, else the workspace's.
pub fn datasets_dir() -> PathBuf {
    std::env::var_os(DATASETS_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("datasets"))
}

fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .and_then(Path::parent)
        .unwrap_or(manifest)
        .to_path_buf()
}

/// The workspace's cache, `target/nn-checklist-cache` (or `$NN_CHECKLIST_CACHE`).
pub fn workspace_cache() -> Cache {
    match std::env::var_os(CACHE_ENV) {
        Some(dir) => Cache::new(dir),
        None => {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| workspace_root().join("target"));
            Cache::new(target.join("nn-checklist-cache"))
        }
    }
}

/// A split of MNIST.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MnistSplit {
    /// 60,000 training images.
    Train,
    /// 10,000 test images (`t10k`).
    Test,
}

/// The images and labels files of a bundled MNIST split.
pub fn mnist_files(split: MnistSplit) -> (PathBuf, PathBuf) {
    let dir = datasets_dir().join("mnist");
    let prefix = match split {
        MnistSplit::Train => "train",
        MnistSplit::Test => "t10k",
    };
    (
        dir.join(format!("{prefix}-images-idx3-ubyte.gz")),
        dir.join(format!("{prefix}-labels-idx1-ubyte.gz")),
    )
}

/// The bundled MNIST split.
pub fn mnist(split: MnistSplit, options: &LoadOptions) -> Result<Dataset> {
    let (images, labels) = mnist_files(split);
    let name = match split {
        MnistSplit::Train => "mnist-train",
        MnistSplit::Test => "mnist-t10k",
    };
    idx::open_pair(name, &images, &labels, idx::mnist_class_names(), options)
}

/// The bundled pre-trained ResNet-20 (PyTorch legacy format, `{'state_dict': {'module.…': ..}}`).
pub fn resnet20_weights() -> PathBuf {
    datasets_dir().join("weights/resnet20-12fca82f.th")
}

/// The bundled pre-trained ResNet-20 on `device`, every one of its 97 tensors imported from
/// [`resnet20_weights`]; an import that leaves any parameter behind is an error.
pub fn resnet20_pretrained(
    device: &burn::prelude::Device,
) -> std::result::Result<crate::models::ResNet20, crate::models::ImportError> {
    let path = resnet20_weights();
    let mut model = crate::models::ResNet20::cifar10(device);
    let outcome = crate::models::import_pytorch(
        &mut model,
        &path,
        &crate::models::PytorchImport::data_parallel_checkpoint(),
    )?;
    if !outcome.is_complete() {
        return Err(crate::models::ImportError {
            path,
            reason: format!("the import is incomplete: {outcome:?}"),
        });
    }
    Ok(model)
}

/// PyTorch's reference figures for the bundled ResNet-20 (`reference_resnet20.json`).
pub fn resnet20_reference() -> PathBuf {
    datasets_dir().join("weights/reference_resnet20.json")
}

/// The exact normalised input (20x3x32x32 f32 little-endian) of the 20 lossless CIFAR-10 PNGs,
/// as PyTorch saw it when computing the reference logits.
pub fn resnet20_reference_input() -> PathBuf {
    datasets_dir().join("weights/cifar10_foolbox20_input_nchw_f32le.bin")
}

/// The normalisation the bundled ResNet-20 was trained with (ImageNet's per-channel figures,
/// as akamaster's trainer used).
pub fn resnet20_normalization() -> crate::Normalization {
    crate::Normalization {
        mean: vec![0.485, 0.456, 0.406],
        std: vec![0.229, 0.224, 0.225],
    }
}

/// The bundled CIFAR-10 test archive.
pub fn cifar10_archive() -> PathBuf {
    datasets_dir().join("cifar10/test-jpg.tar.gz")
}

/// The folder `<class>/<image>.jpg` of the 10,000 CIFAR-10 test JPEGs, extracted into the cache.
pub fn cifar10_test_folder(cache: &Cache) -> Result<PathBuf> {
    let root = cache.extract_tar_gz(&cifar10_archive())?;
    Ok(root.join("cifar10-jpg/test"))
}

/// The 10,000 CIFAR-10 test images (lossy JPEGs, 1,000 per class), as an image folder.
pub fn cifar10_test(options: &LoadOptions) -> Result<Dataset> {
    let folder = cifar10_test_folder(&options.cache)?;
    let listing = image_folder::list(&folder)?;
    if listing.class_names != cifar::class_names() {
        return Err(DataError::InvalidRequest {
            what: format!(
                "{}: classes {:?}; expected CIFAR-10's",
                folder.display(),
                listing.class_names
            ),
        });
    }
    image_folder::open_files(
        "cifar10-test",
        listing.files,
        listing.labels,
        listing.class_names,
        options,
    )
}

/// One of the 20 exact CIFAR-10 test PNGs: its index in the test set, its label, its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExactPng {
    pub test_index: usize,
    pub label: u8,
    pub path: PathBuf,
}

/// The 20 exact PNGs (`cifar10_NN_L.png`: test index NN, label L), in test order.
pub fn cifar10_exact_pngs() -> Result<Vec<ExactPng>> {
    let dir = datasets_dir().join("cifar10/exact-png");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).map_err(|e| DataError::io(&dir, e))? {
        let path = entry.map_err(|e| DataError::io(&dir, e))?.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let parsed = name
            .strip_prefix("cifar10_")
            .and_then(|s| s.strip_suffix(".png"))
            .and_then(|s| s.split_once('_'))
            .and_then(|(i, l)| Some((i.parse::<usize>().ok()?, l.parse::<u8>().ok()?)));
        match parsed {
            Some((test_index, label)) if (label as usize) < cifar::CLASSES => out.push(ExactPng {
                test_index,
                label,
                path,
            }),
            _ => {
                return Err(DataError::UnknownLayout {
                    path,
                    expected: "a file named cifar10_<test index>_<label 0-9>.png".into(),
                });
            }
        }
    }
    out.sort_by_key(|p| p.test_index);
    Ok(out)
}

/// The 20 exact PNGs as a dataset, labelled by their names.
pub fn cifar10_exact(options: &LoadOptions) -> Result<Dataset> {
    let pngs = cifar10_exact_pngs()?;
    let labels = pngs.iter().map(|p| p.label).collect();
    let files = pngs.into_iter().map(|p| p.path).collect();
    image_folder::open_files(
        "cifar10-exact-png",
        files,
        labels,
        cifar::class_names(),
        options,
    )
}

/// Which dataset to open: a bundled one by name, or a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatasetChoice {
    /// The bundled MNIST (train, with t10k held out).
    Mnist,
    /// The bundled CIFAR-10 test images.
    Cifar10,
    /// A folder or file: IDX files, CIFAR-10 binary files, or an image folder.
    Path(PathBuf),
}

impl FromStr for DatasetChoice {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        Ok(match s {
            "mnist" => DatasetChoice::Mnist,
            "cifar10" => DatasetChoice::Cifar10,
            other => DatasetChoice::Path(PathBuf::from(other)),
        })
    }
}

impl fmt::Display for DatasetChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatasetChoice::Mnist => f.write_str("mnist"),
            DatasetChoice::Cifar10 => f.write_str("cifar10"),
            DatasetChoice::Path(p) => write!(f, "{}", p.display()),
        }
    }
}

/// A dataset and, where the source has one, its held-out split.
#[derive(Debug, Clone)]
pub struct Splits {
    pub train: Dataset,
    pub held_out: Option<Dataset>,
}

const LAYOUTS: &str = "a folder with IDX files (<prefix>-images-idx3-ubyte[.gz] and \
    <prefix>-labels-idx1-ubyte[.gz]), CIFAR-10 binary files (data_batch_N.bin / test_batch.bin, \
    or one .bin file), or an image folder root/<class>/<image>";

impl DatasetChoice {
    /// Opens the dataset.
    pub fn open(&self, options: &LoadOptions) -> Result<Splits> {
        match self {
            DatasetChoice::Mnist => Ok(Splits {
                train: mnist(MnistSplit::Train, options)?,
                held_out: Some(mnist(MnistSplit::Test, options)?),
            }),
            DatasetChoice::Cifar10 => Ok(Splits {
                train: cifar10_test(options)?,
                held_out: None,
            }),
            DatasetChoice::Path(path) => open_path(path, options),
        }
    }
}

/// Opens a dataset at `path`, telling the layout from what is there.
pub fn open_path(path: &Path, options: &LoadOptions) -> Result<Splits> {
    let meta = std::fs::metadata(path).map_err(|e| DataError::io(path, e))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "dataset".into());
    if meta.is_file() {
        return if path.extension().is_some_and(|e| e == "bin") {
            Ok(Splits {
                train: cifar::open(&name, &[path.to_path_buf()], options)?,
                held_out: None,
            })
        } else {
            Err(DataError::UnknownLayout {
                path: path.to_path_buf(),
                expected: LAYOUTS.into(),
            })
        };
    }
    // IDX pairs.
    let idx_pair = |prefix: &str| -> Option<(PathBuf, PathBuf)> {
        let find = |stem: String| {
            [stem.clone(), format!("{stem}.gz")]
                .into_iter()
                .map(|f| path.join(f))
                .find(|p| p.is_file())
        };
        Some((
            find(format!("{prefix}-images-idx3-ubyte"))?,
            find(format!("{prefix}-labels-idx1-ubyte"))?,
        ))
    };
    let open_idx = |prefix: &str, (images, labels): (PathBuf, PathBuf)| {
        idx::open_pair(
            &format!("{name}-{prefix}"),
            &images,
            &labels,
            idx::mnist_class_names(),
            options,
        )
    };
    if let Some(train) = idx_pair("train") {
        let held_out = idx_pair("t10k").map(|p| open_idx("t10k", p)).transpose()?;
        return Ok(Splits {
            train: open_idx("train", train)?,
            held_out,
        });
    }
    if let Some(test) = idx_pair("t10k") {
        return Ok(Splits {
            train: open_idx("t10k", test)?,
            held_out: None,
        });
    }
    // CIFAR-10 binary.
    let bins = cifar::files_in(path)?;
    if !bins.is_empty() {
        let test = path.join("test_batch.bin");
        let is_train = bins.iter().any(|b| b != &test);
        let held_out = if is_train && test.is_file() {
            Some(cifar::open(&format!("{name}-test"), &[test], options)?)
        } else {
            None
        };
        return Ok(Splits {
            train: cifar::open(&name, &bins, options)?,
            held_out,
        });
    }
    // Image folder, or train/ and test/ image folders.
    let (train_dir, test_dir) = (path.join("train"), path.join("test"));
    if train_dir.is_dir() && test_dir.is_dir() {
        return Ok(Splits {
            train: image_folder::open(&train_dir, options)?,
            held_out: Some(image_folder::open(&test_dir, options)?),
        });
    }
    match image_folder::open(path, options) {
        Err(DataError::EmptyFolder { path: p, .. }) if p == path => Err(DataError::UnknownLayout {
            path: path.to_path_buf(),
            expected: LAYOUTS.into(),
        }),
        other => Ok(Splits {
            train: other?,
            held_out: None,
        }),
    }
}
