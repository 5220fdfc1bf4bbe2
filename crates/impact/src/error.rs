//! [`ImpactError`], the one error type of the step: every way user input can be wrong (a window
//! larger than the input, a zero stride, an image of the wrong shape, a fill with the wrong
//! number of channels, a target label the model does not have) is a typed error, never a panic.

use std::path::PathBuf;

use model_core::DataError;

/// Why an occlusion or a step run could not be done.
#[derive(Debug, thiserror::Error)]
pub enum ImpactError {
    /// A zero-sized window, or one larger than the input.
    #[error(
        "window {window_h}x{window_w} does not fit an input of {height}x{width} (it must be at least 1x1 and at most the input)"
    )]
    Window {
        window_h: usize,
        window_w: usize,
        height: usize,
        width: usize,
    },
    /// A zero stride.
    #[error("stride {stride_y}x{stride_x}: strides must be at least 1")]
    Stride { stride_y: usize, stride_x: usize },
    /// Input values that do not match the declared shape, a zero dimension, or an input the
    /// model does not take.
    #[error("input shape: {what}")]
    InputShape { what: String },
    /// A fill or highlight with the wrong number of channel values, or a non-finite one.
    #[error("fill: {what}")]
    Fill { what: String },
    /// A target label outside the model's outputs.
    #[error("target label {target} but the model has {classes} outputs")]
    Target { target: usize, classes: usize },
    /// A memory budget of zero bytes, or another unusable option.
    #[error("option: {what}")]
    Option { what: String },
    /// The model's output is not `[batch, classes]` logits, or could not be read back.
    #[error("model output: {what}")]
    Model { what: String },
    /// Reading the dataset failed.
    #[error(transparent)]
    Data(#[from] DataError),
    /// Writing an artifact failed.
    #[error("{}: {message}", path.display())]
    Io { path: PathBuf, message: String },
}

impl ImpactError {
    pub(crate) fn io(path: impl Into<PathBuf>, e: impl std::fmt::Display) -> Self {
        ImpactError::Io {
            path: path.into(),
            message: e.to_string(),
        }
    }
}
