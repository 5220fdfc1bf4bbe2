//! An image folder, `root/<class>/<image>`, the layout of torchvision's `ImageFolder`.
//!
//! Classes are the sub-folders in sorted order (label 0 is the first); images are PNG or JPEG
//! files, all of one size. Grey images give one channel, colour images three (RGB).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use image::{DynamicImage, ImageReader};

use crate::dataset::{Dataset, InMemory, SampleShape, SampleSource};
use crate::error::{DataError, Result};
use crate::loader::{LoadOptions, LoadStrategy};

/// File extensions read as images.
pub const EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

/// The files of an image folder and their labels, without decoding anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderListing {
    pub class_names: Vec<String>,
    pub files: Vec<PathBuf>,
    pub labels: Vec<u8>,
}

/// Lists `root/<class>/<image>`: classes sorted by name, files sorted within each class. Hidden
/// entries (names starting with `.`) and files directly in `root` are ignored; any other file
/// without a PNG or JPEG extension is an error, as is a class folder without images.
pub fn list(root: &Path) -> Result<FolderListing> {
    let mut classes = Vec::new();
    for entry in fs::read_dir(root).map_err(|e| DataError::io(root, e))? {
        let entry = entry.map_err(|e| DataError::io(root, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        if entry.path().is_dir() {
            classes.push((name, entry.path()));
        }
    }
    classes.sort();
    if classes.is_empty() {
        return Err(DataError::EmptyFolder {
            path: root.to_path_buf(),
            expected: "expected one sub-folder per class holding its images (root/<class>/<image>)"
                .into(),
        });
    }
    if classes.len() > 256 {
        return Err(DataError::InvalidRequest {
            what: format!(
                "{}: {} classes; at most 256 are supported",
                root.display(),
                classes.len()
            ),
        });
    }
    let mut listing = FolderListing {
        class_names: Vec::new(),
        files: Vec::new(),
        labels: Vec::new(),
    };
    for (label, (name, dir)) in classes.into_iter().enumerate() {
        let mut files = Vec::new();
        for entry in fs::read_dir(&dir).map_err(|e| DataError::io(&dir, e))? {
            let entry = entry.map_err(|e| DataError::io(&dir, e))?;
            let path = entry.path();
            let file_name = entry.file_name().to_string_lossy().into_owned();
            if file_name.starts_with('.') || path.is_dir() {
                continue;
            }
            let ext = path
                .extension()
                .map(|e| e.to_string_lossy().to_lowercase())
                .unwrap_or_default();
            if !EXTENSIONS.contains(&ext.as_str()) {
                return Err(DataError::NotAnImage {
                    path,
                    reason: if ext.is_empty() {
                        "no file extension".into()
                    } else {
                        format!("extension .{ext}")
                    },
                });
            }
            files.push(path);
        }
        if files.is_empty() {
            return Err(DataError::EmptyFolder {
                path: dir,
                expected: "class folder holds no images; expected at least one PNG or JPEG file"
                    .into(),
            });
        }
        files.sort();
        listing
            .labels
            .extend(std::iter::repeat_n(label as u8, files.len()));
        listing.files.extend(files);
        listing.class_names.push(name);
    }
    Ok(listing)
}

fn open_image(path: &Path) -> Result<DynamicImage> {
    let reader = ImageReader::open(path)
        .map_err(|e| DataError::io(path, e))?
        .with_guessed_format()
        .map_err(|e| DataError::io(path, e))?;
    reader.decode().map_err(|e| DataError::NotAnImage {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

fn shape_of(img: &DynamicImage, channels: usize) -> SampleShape {
    SampleShape::new(channels, img.height() as usize, img.width() as usize)
}

/// Decodes one image file into `C x H x W` bytes: grey for one channel, RGB for three.
pub fn decode(path: &Path, channels: usize) -> Result<(SampleShape, Vec<u8>)> {
    let img = open_image(path)?;
    let shape = shape_of(&img, channels);
    Ok((shape, to_chw(&img, channels)))
}

fn to_chw(img: &DynamicImage, channels: usize) -> Vec<u8> {
    if channels == 1 {
        img.to_luma8().into_raw()
    } else {
        let rgb = img.to_rgb8();
        let plane = rgb.width() as usize * rgb.height() as usize;
        let raw = rgb.as_raw();
        let mut out = vec![0u8; 3 * plane];
        for (p, px) in raw.chunks_exact(3).enumerate() {
            out[p] = px[0];
            out[plane + p] = px[1];
            out[2 * plane + p] = px[2];
        }
        out
    }
}

/// Image files decoded on every request (the on-demand strategies), or all at once.
#[derive(Debug)]
pub struct ImageFiles {
    files: Vec<PathBuf>,
    shape: SampleShape,
}

impl ImageFiles {
    /// Image files that must all have the first file's size; the first file decides the channels
    /// (one for a grey image, three otherwise).
    pub fn new(files: Vec<PathBuf>) -> Result<Self> {
        let first = files.first().ok_or_else(|| DataError::InvalidRequest {
            what: "no image files".into(),
        })?;
        let img = open_image(first)?;
        let channels = if img.color().has_color() { 3 } else { 1 };
        let shape = shape_of(&img, channels);
        if shape.is_empty() {
            return Err(DataError::NotAnImage {
                path: first.clone(),
                reason: "zero-sized image".into(),
            });
        }
        Ok(ImageFiles { files, shape })
    }

    /// The files, in sample order.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }
}

impl SampleSource for ImageFiles {
    fn len(&self) -> usize {
        self.files.len()
    }
    fn shape(&self) -> SampleShape {
        self.shape
    }
    fn read_into(&self, index: usize, out: &mut [u8]) -> Result<()> {
        let path = self.files.get(index).ok_or(DataError::IndexOutOfRange {
            index,
            len: self.files.len(),
        })?;
        let img = open_image(path)?;
        let found = shape_of(&img, self.shape.channels);
        if found != self.shape {
            return Err(DataError::ImageSizeMismatch {
                path: path.clone(),
                expected: self.shape,
                found,
                first: self.files[0].clone(),
            });
        }
        out.copy_from_slice(&to_chw(&img, self.shape.channels));
        Ok(())
    }
    fn describe(&self) -> String {
        let dir = self.files[0]
            .parent()
            .and_then(|p| p.parent())
            .unwrap_or(Path::new("."));
        format!(
            "{} image files under {} decoded on demand",
            self.files.len(),
            dir.display()
        )
    }
}

/// Decodes every file of `files` into memory, on all cores.
fn decode_all(files: &ImageFiles) -> Result<InMemory> {
    let n = files.len();
    let sample = files.shape().len();
    let mut pixels = vec![0u8; n * sample];
    let threads = std::thread::available_parallelism()
        .map(|p| p.get())
        .unwrap_or(1)
        .min(16);
    let per = n.div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = pixels
            .chunks_mut(per * sample)
            .enumerate()
            .map(|(t, out)| {
                scope.spawn(move || {
                    for (k, chunk) in out.chunks_exact_mut(sample).enumerate() {
                        files.read_into(t * per + k, chunk)?;
                    }
                    Ok::<(), DataError>(())
                })
            })
            .collect();
        for h in handles {
            h.join().map_err(|_| DataError::InvalidRequest {
                what: "an image decoder thread panicked".into(),
            })??;
        }
        Ok::<(), DataError>(())
    })?;
    let origin = files.describe().replace(" decoded on demand", "");
    InMemory::new(files.shape(), pixels, origin)
}

/// Opens labelled image files (the labels given) as a dataset.
pub fn open_files(
    name: &str,
    files: Vec<PathBuf>,
    labels: Vec<u8>,
    class_names: Vec<String>,
    options: &LoadOptions,
) -> Result<Dataset> {
    let files = ImageFiles::new(files)?;
    let source: Arc<dyn SampleSource> = match options.strategy {
        LoadStrategy::LoadAll => Arc::new(decode_all(&files)?),
        other => other.wrap(Arc::new(files)),
    };
    Dataset::new(name, class_names, source, labels)
}

/// Opens `root/<class>/<image>` as a dataset.
pub fn open(root: &Path, options: &LoadOptions) -> Result<Dataset> {
    let listing = list(root)?;
    let name = root
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "images".into());
    open_files(
        &name,
        listing.files,
        listing.labels,
        listing.class_names,
        options,
    )
}
