//! The one error type of the data check.
//!
//! Exists so that every way a request can go wrong (nothing to map, labels that do not match the
//! features, parameters out of range, a size that will not fit in memory, a file that cannot be
//! written) comes back as a value the caller can match on, never as a panic or an out-of-memory
//! kill.

use std::path::PathBuf;

/// What went wrong in the data check.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataCheckError {
    /// No samples to map.
    #[error("the dataset is empty: there is nothing to map")]
    Empty,
    /// Too few samples for a t-SNE map.
    #[error("{points} points are too few for a t-SNE map; at least {min} are needed")]
    TooFew { points: usize, min: usize },
    /// The labels do not match the feature rows.
    #[error("{labels} labels for {points} feature rows; give one label per row")]
    LabelCount { labels: usize, points: usize },
    /// A label has no class name.
    #[error("label {label} but only {classes} class names")]
    LabelOutOfRange { label: u8, classes: usize },
    /// A feature is NaN or infinite.
    #[error("feature row {row}, column {column} is {value}; features must be finite")]
    NonFinite {
        row: usize,
        column: usize,
        value: f32,
    },
    /// A parameter is out of its range.
    #[error("invalid parameter `{name}` = {value}: {expected}")]
    InvalidParameter {
        name: &'static str,
        value: String,
        expected: &'static str,
    },
    /// The estimate says the request will not fit in the memory budget.
    #[error(
        "mapping {points} points of {dims} dimensions needs about {} MiB, over the memory budget of {} MiB; \
         map a stratified sample of at most {max_points} points or raise the budget",
        estimated_bytes >> 20, budget_bytes >> 20
    )]
    TooLarge {
        points: usize,
        dims: usize,
        estimated_bytes: u64,
        budget_bytes: u64,
        /// The largest sample that fits the budget.
        max_points: usize,
    },
    /// The optimisation left the map with NaN or infinite coordinates (a learning rate far too
    /// large, or features of extreme magnitude).
    #[error(
        "the t-SNE map diverged (non-finite coordinates); lower the learning rate or scale the features"
    )]
    Diverged,
    /// Reading the dataset failed.
    #[error(transparent)]
    Data(#[from] model_core::DataError),
    /// A file could not be written.
    #[error("{}: cannot write: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A picture could not be drawn or encoded.
    #[error("{}: cannot draw: {message}", path.display())]
    Plot { path: PathBuf, message: String },
}

pub type Result<T, E = DataCheckError> = std::result::Result<T, E>;

pub(crate) fn invalid(
    name: &'static str,
    value: impl ToString,
    expected: &'static str,
) -> DataCheckError {
    DataCheckError::InvalidParameter {
        name,
        value: value.to_string(),
        expected,
    }
}
