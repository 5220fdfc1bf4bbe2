//! The typed errors of the data layer.
//!
//! Every reader returns [`DataError`] for malformed input instead of panicking. Each variant names
//! the file, where in it the problem sits (a byte offset, or a field), and what was expected, so a
//! user reading one line knows which file to fix and how.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::dataset::SampleShape;

/// A place in an input file: the path and a byte offset.
///
/// For a gzip-compressed file the offset counts bytes of the decompressed stream, and the
/// location says so when printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file as the user named it.
    pub path: PathBuf,
    /// Byte offset of the problem.
    pub offset: u64,
    /// Whether `offset` counts bytes of the decompressed stream of a gzip file.
    pub decompressed: bool,
}

impl Location {
    /// A location in a plain file.
    pub fn new(path: impl Into<PathBuf>, offset: u64) -> Self {
        Location {
            path: path.into(),
            offset,
            decompressed: false,
        }
    }

    pub(crate) fn in_stream(path: &Path, offset: u64, decompressed: bool) -> Self {
        Location {
            path: path.to_path_buf(),
            offset,
            decompressed,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.decompressed {
            write!(
                f,
                "{}: byte {} of the decompressed stream",
                self.path.display(),
                self.offset
            )
        } else {
            write!(f, "{}: byte {}", self.path.display(), self.offset)
        }
    }
}

/// What went wrong while reading a dataset.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// The file or folder could not be opened or read at all.
    #[error("{}: cannot read: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A gzip file whose stream is corrupt or cut short.
    #[error("{}: corrupt gzip stream after {offset} decompressed bytes: {reason}", path.display())]
    Decompress {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    /// The file does not start with the magic number of the expected format.
    #[error("{at}: bad magic number {found}; expected {expected}")]
    BadMagic {
        at: Location,
        expected: String,
        found: String,
    },
    /// The file ends inside a header or inside a record.
    #[error("{at}: file ends here, truncated; expected {expected}")]
    Truncated { at: Location, expected: String },
    /// The header's counts and the length of the data that follows it disagree.
    #[error(
        "{at}: header declares {declared} {field} ({expected_bytes} bytes of data after the header) \
         but the file holds {actual_bytes}"
    )]
    LengthMismatch {
        at: Location,
        field: &'static str,
        declared: u64,
        expected_bytes: u64,
        actual_bytes: u64,
    },
    /// An images file and its labels file hold different numbers of samples.
    #[error(
        "{} holds {images} images but {} holds {labels} labels; expected the same count",
        images_path.display(),
        labels_path.display()
    )]
    CountMismatch {
        images_path: PathBuf,
        images: u64,
        labels_path: PathBuf,
        labels: u64,
    },
    /// A label outside `0..classes`.
    #[error("{at}: label {label} is out of range; expected 0..{classes}")]
    LabelOutOfRange {
        at: Location,
        label: u32,
        classes: usize,
    },
    /// A size field of zero (no rows, no columns, no samples ...).
    #[error("{at}: {field} is 0; expected a positive size")]
    ZeroDimension { at: Location, field: &'static str },
    /// A folder with nothing usable in it.
    #[error("{}: {expected}", path.display())]
    EmptyFolder { path: PathBuf, expected: String },
    /// A file in an image folder that is not a PNG or JPEG image, or does not decode as one.
    #[error("{}: not an image: {reason}; expected a PNG or JPEG file", path.display())]
    NotAnImage { path: PathBuf, reason: String },
    /// An image whose size differs from the dataset's sample shape.
    #[error(
        "{}: image is {found}; expected {expected} like the dataset's first image {}",
        path.display(),
        first.display()
    )]
    ImageSizeMismatch {
        path: PathBuf,
        expected: SampleShape,
        found: SampleShape,
        first: PathBuf,
    },
    /// A cached, extracted or decompressed file that no longer matches its recorded checksum
    /// and could not be re-created.
    #[error("{}: checksum mismatch: expected sha256 {expected}, found {found}", path.display())]
    Checksum {
        path: PathBuf,
        expected: String,
        found: String,
    },
    /// A path that is none of the dataset layouts this crate reads.
    #[error("{}: not a dataset; expected {expected}", path.display())]
    UnknownLayout { path: PathBuf, expected: String },
    /// A sample index past the end of the dataset.
    #[error("sample {index} is out of range; the dataset holds {len} samples")]
    IndexOutOfRange { index: usize, len: usize },
    /// A request the data layer cannot satisfy (a subset larger than the dataset ...).
    #[error("{what}")]
    InvalidRequest { what: String },
}

impl DataError {
    pub(crate) fn io(path: &Path, source: io::Error) -> Self {
        DataError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// The byte location of the problem, where the error has one.
    pub fn location(&self) -> Option<&Location> {
        match self {
            DataError::BadMagic { at, .. }
            | DataError::Truncated { at, .. }
            | DataError::LengthMismatch { at, .. }
            | DataError::LabelOutOfRange { at, .. }
            | DataError::ZeroDimension { at, .. } => Some(at),
            _ => None,
        }
    }

    /// The file or folder the error is about, where it names one.
    pub fn path(&self) -> Option<&Path> {
        match self {
            DataError::Io { path, .. }
            | DataError::Decompress { path, .. }
            | DataError::EmptyFolder { path, .. }
            | DataError::NotAnImage { path, .. }
            | DataError::ImageSizeMismatch { path, .. }
            | DataError::Checksum { path, .. }
            | DataError::UnknownLayout { path, .. } => Some(path),
            DataError::CountMismatch { images_path, .. } => Some(images_path),
            _ => self.location().map(|l| l.path.as_path()),
        }
    }
}

/// Shorthand for results of the data layer.
pub type Result<T, E = DataError> = std::result::Result<T, E>;
