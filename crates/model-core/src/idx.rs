//! The IDX format of MNIST: `train-images-idx3-ubyte` and friends, raw or gzip-compressed.
//!
//! An IDX file is a big-endian header (two zero bytes, a type code, the number of dimensions,
//! then one `u32` size per dimension) followed by the values. MNIST uses type `0x08` (unsigned
//! bytes): images are 3-dimensional (`n, rows, cols`, magic 2051) and labels 1-dimensional
//! (`n`, magic 2049). Gzip is told apart from raw by the file's first two bytes.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::cache::Cache;
use crate::dataset::{Dataset, InMemory, SampleShape, SampleSource};
use crate::error::{DataError, Location, Result};
use crate::loader::{LoadOptions, LoadStrategy};

/// Magic number of an IDX file of unsigned-byte images (`n x rows x cols`).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file of unsigned-byte labels (`n`).
pub const LABELS_MAGIC: u32 = 0x0000_0801;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// The decoded header of an IDX file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxHeader {
    /// One size per dimension, the sample count first.
    pub dims: Vec<u32>,
    /// Bytes of header before the values.
    pub header_len: usize,
}

/// The whole content of a file, decompressed when it is gzip.
struct FileBytes {
    path: PathBuf,
    bytes: Vec<u8>,
    gz: bool,
}

impl FileBytes {
    fn read(path: &Path) -> Result<Self> {
        let mut file = File::open(path).map_err(|e| DataError::io(path, e))?;
        let mut raw = Vec::new();
        file.read_to_end(&mut raw)
            .map_err(|e| DataError::io(path, e))?;
        if raw.starts_with(&GZIP_MAGIC) {
            let mut decoder = flate2::read::MultiGzDecoder::new(&raw[..]);
            let mut bytes = Vec::new();
            let mut buf = vec![0u8; 1 << 16];
            loop {
                match decoder.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => bytes.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        return Err(DataError::Decompress {
                            path: path.to_path_buf(),
                            offset: bytes.len() as u64,
                            reason: e.to_string(),
                        });
                    }
                }
            }
            Ok(FileBytes {
                path: path.to_path_buf(),
                bytes,
                gz: true,
            })
        } else {
            Ok(FileBytes {
                path: path.to_path_buf(),
                bytes: raw,
                gz: false,
            })
        }
    }

    fn at(&self, offset: usize) -> Location {
        Location::in_stream(&self.path, offset as u64, self.gz)
    }
}

fn kind_name(magic: u32) -> &'static str {
    if magic == IMAGES_MAGIC {
        "images (n x rows x cols)"
    } else {
        "labels (n)"
    }
}

fn dim_names(magic: u32) -> &'static [&'static str] {
    if magic == IMAGES_MAGIC {
        &["image count", "rows", "columns"]
    } else {
        &["label count"]
    }
}

/// Parses the header at the start of `bytes` (at least the header; the data may be absent) and
/// checks the magic number, the header's length and that no size is zero.
fn parse_header_fields(
    bytes: &[u8],
    at: &impl Fn(usize) -> Location,
    magic: u32,
) -> Result<IdxHeader> {
    let ndims = (magic & 0xff) as usize;
    if bytes.len() < 4 {
        return Err(DataError::Truncated {
            at: at(bytes.len()),
            expected: format!(
                "a 4-byte IDX magic number 0x{magic:08x} ({})",
                kind_name(magic)
            ),
        });
    }
    let found = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    if found != magic {
        return Err(DataError::BadMagic {
            at: at(0),
            expected: format!("0x{magic:08x} (IDX, unsigned bytes, {})", kind_name(magic)),
            found: format!("0x{found:08x}"),
        });
    }
    let header_len = 4 + 4 * ndims;
    if bytes.len() < header_len {
        return Err(DataError::Truncated {
            at: at(bytes.len()),
            expected: format!("a {header_len}-byte header with {ndims} big-endian u32 sizes"),
        });
    }
    let dims: Vec<u32> = (0..ndims)
        .map(|k| {
            let o = 4 + 4 * k;
            u32::from_be_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]])
        })
        .collect();
    for (k, &d) in dims.iter().enumerate() {
        if d == 0 {
            return Err(DataError::ZeroDimension {
                at: at(4 + 4 * k),
                field: dim_names(magic)[k],
            });
        }
    }
    Ok(IdxHeader { dims, header_len })
}

/// Checks that `data_len` bytes after the header are exactly what the header declares.
fn check_data_length(
    header: &IdxHeader,
    data_len: u64,
    at: &impl Fn(usize) -> Location,
    magic: u32,
) -> Result<()> {
    let dims = &header.dims;
    let record: u128 = dims[1..].iter().map(|&d| d as u128).product();
    let expected = dims[0] as u128 * record;
    let actual = data_len as u128;
    let what = if magic == IMAGES_MAGIC {
        "image"
    } else {
        "label"
    };
    if actual < expected && !actual.is_multiple_of(record) {
        let whole = actual / record;
        return Err(DataError::Truncated {
            at: at(header.header_len + (whole * record) as usize),
            expected: format!(
                "{record} bytes for {what} {whole} of the {} declared",
                dims[0]
            ),
        });
    }
    if actual != expected {
        return Err(DataError::LengthMismatch {
            at: at(4),
            field: dim_names(magic)[0],
            declared: dims[0] as u64,
            expected_bytes: expected.min(u64::MAX as u128) as u64,
            actual_bytes: data_len,
        });
    }
    Ok(())
}

/// Parses and checks the header of `bytes` (a whole IDX file's content).
fn parse_header(bytes: &[u8], at: impl Fn(usize) -> Location, magic: u32) -> Result<IdxHeader> {
    let header = parse_header_fields(bytes, &at, magic)?;
    check_data_length(
        &header,
        (bytes.len() - header.header_len) as u64,
        &at,
        magic,
    )?;
    Ok(header)
}

/// Images read from an IDX file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxImages {
    pub count: usize,
    pub rows: usize,
    pub cols: usize,
    /// `count x rows x cols` bytes.
    pub pixels: Vec<u8>,
}

/// Reads an IDX images file (raw or gzip) whole.
pub fn read_images(path: &Path) -> Result<IdxImages> {
    let file = FileBytes::read(path)?;
    let header = parse_header(&file.bytes, |o| file.at(o), IMAGES_MAGIC)?;
    let FileBytes { mut bytes, .. } = file;
    bytes.drain(..header.header_len);
    Ok(IdxImages {
        count: header.dims[0] as usize,
        rows: header.dims[1] as usize,
        cols: header.dims[2] as usize,
        pixels: bytes,
    })
}

/// Reads an IDX labels file (raw or gzip) whole, checking every label is below `classes`.
pub fn read_labels(path: &Path, classes: usize) -> Result<Vec<u8>> {
    let file = FileBytes::read(path)?;
    let header = parse_header(&file.bytes, |o| file.at(o), LABELS_MAGIC)?;
    let labels = file.bytes[header.header_len..].to_vec();
    if let Some(i) = labels.iter().position(|&l| l as usize >= classes) {
        return Err(DataError::LabelOutOfRange {
            at: file.at(header.header_len + i),
            label: labels[i] as u32,
            classes,
        });
    }
    Ok(labels)
}

/// Writes images (`count x rows x cols` bytes) as a raw IDX images file.
pub fn write_images(mut w: impl Write, rows: usize, cols: usize, pixels: &[u8]) -> io::Result<()> {
    let plane = rows * cols;
    if plane == 0 || !pixels.len().is_multiple_of(plane) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "pixels are not whole images",
        ));
    }
    let to_u32 = |v: usize| {
        u32::try_from(v).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "size over u32"))
    };
    w.write_all(&IMAGES_MAGIC.to_be_bytes())?;
    for d in [pixels.len() / plane, rows, cols] {
        w.write_all(&to_u32(d)?.to_be_bytes())?;
    }
    w.write_all(pixels)
}

/// Writes labels as a raw IDX labels file.
pub fn write_labels(mut w: impl Write, labels: &[u8]) -> io::Result<()> {
    let n = u32::try_from(labels.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "count over u32"))?;
    w.write_all(&LABELS_MAGIC.to_be_bytes())?;
    w.write_all(&n.to_be_bytes())?;
    w.write_all(labels)
}

/// An uncompressed IDX images file read sample by sample from disk (`OnDemand*` strategies).
#[derive(Debug)]
pub struct IdxImagesFile {
    path: PathBuf,
    header_len: u64,
    count: usize,
    shape: SampleShape,
}

impl IdxImagesFile {
    /// Opens an uncompressed IDX images file, checking its header against its length.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| DataError::io(path, e))?;
        let len = file.metadata().map_err(|e| DataError::io(path, e))?.len();
        let mut head = vec![0u8; 16.min(len as usize)];
        file.read_exact_at(&mut head, 0)
            .map_err(|e| DataError::io(path, e))?;
        let at = |o: usize| Location::new(path, o as u64);
        let header = parse_header_fields(&head, &at, IMAGES_MAGIC)?;
        check_data_length(&header, len - header.header_len as u64, &at, IMAGES_MAGIC)?;
        let dims = header.dims;
        Ok(IdxImagesFile {
            path: path.to_path_buf(),
            header_len: 16,
            count: dims[0] as usize,
            shape: SampleShape::new(1, dims[1] as usize, dims[2] as usize),
        })
    }

    fn read_with(&self, file: &File, index: usize, out: &mut [u8]) -> Result<()> {
        if index >= self.count {
            return Err(DataError::IndexOutOfRange {
                index,
                len: self.count,
            });
        }
        let n = self.shape.len() as u64;
        file.read_exact_at(out, self.header_len + index as u64 * n)
            .map_err(|e| DataError::io(&self.path, e))
    }
}

impl SampleSource for IdxImagesFile {
    fn len(&self) -> usize {
        self.count
    }
    fn shape(&self) -> SampleShape {
        self.shape
    }
    fn read_into(&self, index: usize, out: &mut [u8]) -> Result<()> {
        let file = File::open(&self.path).map_err(|e| DataError::io(&self.path, e))?;
        self.read_with(&file, index, out)
    }
    fn read_many(&self, indices: &[usize], out: &mut [u8]) -> Result<()> {
        let file = File::open(&self.path).map_err(|e| DataError::io(&self.path, e))?;
        let n = self.shape.len();
        for (&index, chunk) in indices.iter().zip(out.chunks_exact_mut(n)) {
            self.read_with(&file, index, chunk)?;
        }
        Ok(())
    }
    fn describe(&self) -> String {
        format!("IDX file {} read on demand", self.path.display())
    }
}

/// The ten MNIST class names, `"0"` to `"9"`.
pub fn mnist_class_names() -> Vec<String> {
    (0..10).map(|d| d.to_string()).collect()
}

/// Opens an IDX images file and its labels file as a dataset.
///
/// With [`LoadStrategy::LoadAll`] both files are read whole (gzip decompressed in memory). With an
/// on-demand strategy a gzip images file is decompressed once into `options.cache` (verified by
/// checksum) and samples are then read from that file on every request.
pub fn open_pair(
    name: &str,
    images: &Path,
    labels: &Path,
    class_names: Vec<String>,
    options: &LoadOptions,
) -> Result<Dataset> {
    let label_values = read_labels(labels, class_names.len())?;
    let source: Arc<dyn SampleSource> = match options.strategy {
        LoadStrategy::LoadAll => {
            let im = read_images(images)?;
            check_counts(images, im.count, labels, label_values.len())?;
            Arc::new(InMemory::new(
                SampleShape::new(1, im.rows, im.cols),
                im.pixels,
                images.display().to_string(),
            )?)
        }
        LoadStrategy::OnDemandNoCache | LoadStrategy::OnDemandCached { .. } => {
            let raw = uncompressed(images, &options.cache)?;
            let file = IdxImagesFile::open(&raw).map_err(|e| rename_path(e, &raw, images))?;
            check_counts(images, file.len(), labels, label_values.len())?;
            options.strategy.wrap(Arc::new(file))
        }
    };
    Dataset::new(name, class_names, source, label_values)
}

fn check_counts(images: &Path, n_images: usize, labels: &Path, n_labels: usize) -> Result<()> {
    if n_images != n_labels {
        return Err(DataError::CountMismatch {
            images_path: images.to_path_buf(),
            images: n_images as u64,
            labels_path: labels.to_path_buf(),
            labels: n_labels as u64,
        });
    }
    Ok(())
}

/// The path of an uncompressed copy of `path`: itself when raw, a verified cache file when gzip.
fn uncompressed(path: &Path, cache: &Cache) -> Result<PathBuf> {
    let mut head = [0u8; 2];
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let n = file
        .read_at(&mut head, 0)
        .map_err(|e| DataError::io(path, e))?;
    if n == 2 && head == GZIP_MAGIC {
        cache.gunzip(path)
    } else {
        Ok(path.to_path_buf())
    }
}

/// Errors found in the decompressed cache copy name the user's file, offsets in its stream.
fn rename_path(e: DataError, cached: &Path, original: &Path) -> DataError {
    let fix = |at: Location| {
        if at.path == cached {
            Location {
                path: original.to_path_buf(),
                offset: at.offset,
                decompressed: original != cached,
            }
        } else {
            at
        }
    };
    match e {
        DataError::BadMagic {
            at,
            expected,
            found,
        } => DataError::BadMagic {
            at: fix(at),
            expected,
            found,
        },
        DataError::Truncated { at, expected } => DataError::Truncated {
            at: fix(at),
            expected,
        },
        DataError::LengthMismatch {
            at,
            field,
            declared,
            expected_bytes,
            actual_bytes,
        } => DataError::LengthMismatch {
            at: fix(at),
            field,
            declared,
            expected_bytes,
            actual_bytes,
        },
        DataError::ZeroDimension { at, field } => DataError::ZeroDimension { at: fix(at), field },
        other => other,
    }
}
