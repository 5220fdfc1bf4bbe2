//! The CIFAR-10 binary format: `data_batch_1.bin` .. `data_batch_5.bin` and `test_batch.bin`.
//!
//! Each file is a run of 3,073-byte records and nothing else: one label byte, then the 32x32 red,
//! green and blue planes, row-major (already `C x H x W`). There is no header, so a file is
//! checked by its length (a whole number of records) and its label bytes (below 10).

use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::dataset::{Dataset, InMemory, SampleShape, SampleSource};
use crate::error::{DataError, Location, Result};
use crate::loader::{LoadOptions, LoadStrategy};

/// Shape of a CIFAR-10 image.
pub const SHAPE: SampleShape = SampleShape {
    channels: 3,
    height: 32,
    width: 32,
};
/// Bytes of one record: the label, then 3,072 pixel bytes.
pub const RECORD: usize = 1 + 3 * 32 * 32;
/// Number of CIFAR-10 classes.
pub const CLASSES: usize = 10;

/// The class names in label order.
pub fn class_names() -> Vec<String> {
    [
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    ]
    .into_iter()
    .map(String::from)
    .collect()
}

/// Writes samples (label, 3,072 `C x H x W` bytes) as CIFAR-10 binary records.
pub fn write_records<'a>(
    mut w: impl Write,
    samples: impl IntoIterator<Item = (u8, &'a [u8])>,
) -> io::Result<()> {
    for (label, pixels) in samples {
        if pixels.len() != SHAPE.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a CIFAR-10 image is 3,072 bytes",
            ));
        }
        w.write_all(&[label])?;
        w.write_all(pixels)?;
    }
    Ok(())
}

/// Checks a file's length and returns its record count.
fn check_length(path: &Path, len: u64) -> Result<usize> {
    if len == 0 {
        return Err(DataError::ZeroDimension {
            at: Location::new(path, 0),
            field: "record count",
        });
    }
    let rem = len % RECORD as u64;
    if rem != 0 {
        return Err(DataError::Truncated {
            at: Location::new(path, len - rem),
            expected: format!(
                "a whole {RECORD}-byte record (label + 3x32x32 pixels); {rem} bytes remain"
            ),
        });
    }
    Ok((len / RECORD as u64) as usize)
}

fn check_label(path: &Path, offset: u64, label: u8) -> Result<u8> {
    if label as usize >= CLASSES {
        return Err(DataError::LabelOutOfRange {
            at: Location::new(path, offset),
            label: label as u32,
            classes: CLASSES,
        });
    }
    Ok(label)
}

/// Reads CIFAR-10 binary files whole: their labels and, when `keep_pixels`, their pixels.
fn scan(paths: &[PathBuf], keep_pixels: bool) -> Result<(Vec<u8>, Vec<u8>, Vec<usize>)> {
    let mut labels = Vec::new();
    let mut pixels = Vec::new();
    let mut counts = Vec::new();
    for path in paths {
        let file = File::open(path).map_err(|e| DataError::io(path, e))?;
        let len = file.metadata().map_err(|e| DataError::io(path, e))?.len();
        let records = check_length(path, len)?;
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let mut record = vec![0u8; RECORD];
        for r in 0..records {
            reader
                .read_exact(&mut record)
                .map_err(|e| DataError::io(path, e))?;
            labels.push(check_label(path, (r * RECORD) as u64, record[0])?);
            if keep_pixels {
                pixels.extend_from_slice(&record[1..]);
            }
        }
        counts.push(records);
    }
    Ok((labels, pixels, counts))
}

/// CIFAR-10 binary files read record by record from disk (the on-demand strategies).
#[derive(Debug)]
pub struct CifarBinaryFiles {
    /// Each file and the index of its first record.
    files: Vec<(PathBuf, usize)>,
    len: usize,
}

impl CifarBinaryFiles {
    fn locate(&self, index: usize) -> Result<(&Path, u64)> {
        if index >= self.len {
            return Err(DataError::IndexOutOfRange {
                index,
                len: self.len,
            });
        }
        let k = self.files.partition_point(|&(_, first)| first <= index) - 1;
        let (path, first) = &self.files[k];
        Ok((path, ((index - first) * RECORD + 1) as u64))
    }
}

impl SampleSource for CifarBinaryFiles {
    fn len(&self) -> usize {
        self.len
    }
    fn shape(&self) -> SampleShape {
        SHAPE
    }
    fn read_into(&self, index: usize, out: &mut [u8]) -> Result<()> {
        let (path, offset) = self.locate(index)?;
        let file = File::open(path).map_err(|e| DataError::io(path, e))?;
        file.read_exact_at(out, offset)
            .map_err(|e| DataError::io(path, e))
    }
    fn read_many(&self, indices: &[usize], out: &mut [u8]) -> Result<()> {
        // One open per file per batch, one positioned read per record.
        let mut open: Option<(PathBuf, File)> = None;
        for (&index, chunk) in indices.iter().zip(out.chunks_exact_mut(SHAPE.len())) {
            let (path, offset) = self.locate(index)?;
            if open.as_ref().is_none_or(|(p, _)| p != path) {
                let file = File::open(path).map_err(|e| DataError::io(path, e))?;
                open = Some((path.to_path_buf(), file));
            }
            if let Some((_, file)) = &open {
                file.read_exact_at(chunk, offset)
                    .map_err(|e| DataError::io(path, e))?;
            }
        }
        Ok(())
    }
    fn describe(&self) -> String {
        format!(
            "{} CIFAR-10 binary file(s) read on demand",
            self.files.len()
        )
    }
}

/// Opens CIFAR-10 binary files (in the order given) as one dataset.
///
/// Labels are read and checked at once; pixels are read now (`LoadAll`) or on demand.
pub fn open(name: &str, paths: &[PathBuf], options: &LoadOptions) -> Result<Dataset> {
    if paths.is_empty() {
        return Err(DataError::InvalidRequest {
            what: "no CIFAR-10 binary files given".into(),
        });
    }
    let load_all = options.strategy == LoadStrategy::LoadAll;
    let (labels, pixels, counts) = scan(paths, load_all)?;
    let source: Arc<dyn SampleSource> = if load_all {
        Arc::new(InMemory::new(
            SHAPE,
            pixels,
            format!("{} CIFAR-10 binary file(s)", paths.len()),
        )?)
    } else {
        let mut first = 0;
        let files = paths
            .iter()
            .zip(&counts)
            .map(|(p, &n)| {
                let entry = (p.clone(), first);
                first += n;
                entry
            })
            .collect();
        options
            .strategy
            .wrap(Arc::new(CifarBinaryFiles { files, len: first }))
    };
    Dataset::new(name, class_names(), source, labels)
}

/// The CIFAR-10 binary files of a folder: `data_batch_*.bin` in order, or else `test_batch.bin`.
pub fn files_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))?;
    let mut train = Vec::new();
    let mut test = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| DataError::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("data_batch_") && name.ends_with(".bin") {
            train.push(entry.path());
        } else if name == "test_batch.bin" {
            test.push(entry.path());
        }
    }
    train.sort();
    Ok(if train.is_empty() { test } else { train })
}
