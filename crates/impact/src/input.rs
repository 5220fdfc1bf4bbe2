//! What the model sees: an [`Input`] (one normalised `C x H x W` sample, an image or any 2-D grid
//! of values as `1 x H x W`), the [`Fill`] that occludes or highlights a window, and the
//! [`Target`] label whose probability is followed.

use model_core::{MeanImage, Normalization, SampleShape};
use serde::{Deserialize, Serialize};

use crate::error::ImpactError;

/// One sample as the model takes it: normalised `f32` values, `channels x height x width`.
#[derive(Debug, Clone, PartialEq)]
pub struct Input {
    shape: SampleShape,
    values: Vec<f32>,
}

impl Input {
    /// A sample of `shape` from its normalised values (`C x H x W`, row-major).
    pub fn new(shape: SampleShape, values: Vec<f32>) -> Result<Self, ImpactError> {
        if shape.channels == 0 || shape.height == 0 || shape.width == 0 {
            return Err(ImpactError::InputShape {
                what: format!("{shape} has a zero dimension"),
            });
        }
        if values.len() != shape.len() {
            return Err(ImpactError::InputShape {
                what: format!(
                    "{} values for a {shape} input ({} expected)",
                    values.len(),
                    shape.len()
                ),
            });
        }
        Ok(Input { shape, values })
    }

    /// A non-image input: a `height x width` grid of values (a heat map of data), as `1 x H x W`.
    pub fn grid(height: usize, width: usize, values: Vec<f32>) -> Result<Self, ImpactError> {
        Input::new(SampleShape::new(1, height, width), values)
    }

    /// An image from its `u8` pixels (`C x H x W`), normalised as the model was trained:
    /// `(x / 255 - mean) / std` per channel.
    pub fn from_pixels(
        pixels: &[u8],
        shape: SampleShape,
        normalization: &Normalization,
    ) -> Result<Self, ImpactError> {
        let values: Vec<f32> = pixels.iter().map(|&p| p as f32).collect();
        Input::from_pixel_values(&values, shape, normalization)
    }

    /// The dataset's mean image (pixel units 0..=255), normalised.
    pub fn from_mean(mean: &MeanImage, normalization: &Normalization) -> Result<Self, ImpactError> {
        Input::from_pixel_values(&mean.pixels, mean.shape, normalization)
    }

    fn from_pixel_values(
        pixels: &[f32],
        shape: SampleShape,
        normalization: &Normalization,
    ) -> Result<Self, ImpactError> {
        if pixels.len() != shape.len() {
            return Err(ImpactError::InputShape {
                what: format!("{} pixels for a {shape} image", pixels.len()),
            });
        }
        check_normalization(normalization, shape.channels)?;
        let plane = shape.plane().max(1);
        let values = pixels
            .iter()
            .enumerate()
            .map(|(i, &p)| {
                let c = i / plane;
                (p / 255.0 - normalization.mean[c]) / normalization.std[c]
            })
            .collect();
        Input::new(shape, values)
    }

    pub fn shape(&self) -> SampleShape {
        self.shape
    }

    /// The normalised values, `C x H x W`.
    pub fn values(&self) -> &[f32] {
        &self.values
    }
}

pub(crate) fn check_normalization(n: &Normalization, channels: usize) -> Result<(), ImpactError> {
    if n.mean.len() != channels || n.std.len() != channels {
        return Err(ImpactError::InputShape {
            what: format!(
                "normalisation has {} means and {} stds for {channels}-channel inputs",
                n.mean.len(),
                n.std.len()
            ),
        });
    }
    if n.std.iter().any(|&s| s == 0.0 || !s.is_finite()) || n.mean.iter().any(|m| !m.is_finite()) {
        return Err(ImpactError::InputShape {
            what: format!("normalisation {n:?} has a zero or non-finite figure"),
        });
    }
    Ok(())
}

/// What goes into an occluded (or highlighted) window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum Fill {
    /// The value a black pixel (0) has after normalisation, per channel: `(0 - mean) / std`;
    /// 0 when there is no normalisation (non-image data).
    Black,
    /// The value a white pixel (255) has after normalisation: `(1 - mean) / std`; 1 without.
    White,
    /// One normalised value in every channel.
    Value(f32),
    /// One normalised value per channel.
    PerChannel(Vec<f32>),
}

impl Fill {
    /// The normalised value per channel for `channels`-channel inputs.
    pub fn resolve(
        &self,
        channels: usize,
        normalization: Option<&Normalization>,
    ) -> Result<Vec<f32>, ImpactError> {
        let from_pixel = |pixel: f32| -> Result<Vec<f32>, ImpactError> {
            match normalization {
                Some(n) => {
                    check_normalization(n, channels)?;
                    Ok((0..channels)
                        .map(|c| (pixel - n.mean[c]) / n.std[c])
                        .collect())
                }
                None => Ok(vec![pixel; channels]),
            }
        };
        let values = match self {
            Fill::Black => from_pixel(0.0)?,
            Fill::White => from_pixel(1.0)?,
            Fill::Value(v) => vec![*v; channels],
            Fill::PerChannel(v) => {
                if v.len() != channels {
                    return Err(ImpactError::Fill {
                        what: format!("{} values for {channels}-channel inputs", v.len()),
                    });
                }
                v.clone()
            }
        };
        if values.iter().any(|v| !v.is_finite()) {
            return Err(ImpactError::Fill {
                what: format!("{self:?} gives non-finite values {values:?}"),
            });
        }
        Ok(values)
    }
}

/// The label whose probability an occlusion follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "label")]
pub enum Target {
    /// The label the model predicts for the unoccluded input.
    #[default]
    Predicted,
    /// A given label.
    Label(usize),
}
