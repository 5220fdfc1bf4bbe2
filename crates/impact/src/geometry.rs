//! Where the window goes: the [`Window`] (size and stride), the top-left corners it takes, and the
//! per-pixel averaging of per-window values into a [`Map`] at input resolution.
//!
//! Window positions follow Captum's `Occlusion`: along each axis `0, stride, 2 stride, ...` while
//! the window still fits, i.e. `(side - window) / stride + 1` positions (28 pixels, window 6,
//! stride 2: 12, so 144 windows). A pixel's value in a map is the mean of the values of the
//! windows that cover it; a pixel no window covers (the last `(side - window) % stride` rows or
//! columns) is 0 and has coverage 0.

use serde::{Deserialize, Serialize};

use crate::error::ImpactError;

/// A rectangular window and the step between its positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Window {
    pub height: usize,
    pub width: usize,
    pub stride_y: usize,
    pub stride_x: usize,
}

impl Window {
    /// A `size x size` window moved by `stride` along both axes.
    pub fn square(size: usize, stride: usize) -> Self {
        Window {
            height: size,
            width: size,
            stride_y: stride,
            stride_x: stride,
        }
    }

    /// A square window for a `height x width` input when none is given: a fifth of the smaller
    /// side (at least 1), stride a third of that (at least 1).
    pub fn default_for(height: usize, width: usize) -> Self {
        let size = (height.min(width) / 5).max(1);
        Window::square(size, (size / 3).max(1))
    }

    /// Checks that the window fits a `height x width` input and that the strides are positive.
    pub fn check(&self, height: usize, width: usize) -> Result<(), ImpactError> {
        if self.stride_y == 0 || self.stride_x == 0 {
            return Err(ImpactError::Stride {
                stride_y: self.stride_y,
                stride_x: self.stride_x,
            });
        }
        if self.height == 0 || self.width == 0 || self.height > height || self.width > width {
            return Err(ImpactError::Window {
                window_h: self.height,
                window_w: self.width,
                height,
                width,
            });
        }
        Ok(())
    }

    /// Rows and columns of window positions on a `height x width` input.
    pub fn grid(&self, height: usize, width: usize) -> Result<[usize; 2], ImpactError> {
        self.check(height, width)?;
        Ok([
            (height - self.height) / self.stride_y + 1,
            (width - self.width) / self.stride_x + 1,
        ])
    }

    /// The top-left corner `(y, x)` of every window position, row by row.
    pub fn positions(
        &self,
        height: usize,
        width: usize,
    ) -> Result<Vec<(usize, usize)>, ImpactError> {
        let [rows, cols] = self.grid(height, width)?;
        Ok((0..rows)
            .flat_map(|r| (0..cols).map(move |c| (r * self.stride_y, c * self.stride_x)))
            .collect())
    }
}

/// A map of values at input resolution, row-major `height x width`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Map {
    pub height: usize,
    pub width: usize,
    pub values: Vec<f32>,
}

impl Map {
    /// The value at row `y`, column `x`.
    pub fn get(&self, y: usize, x: usize) -> f32 {
        self.values[y * self.width + x]
    }

    /// The position `(y, x)` of the largest value (the first one on ties).
    pub fn argmax(&self) -> (usize, usize) {
        let mut best = 0;
        for (i, &v) in self.values.iter().enumerate() {
            if v > self.values[best] {
                best = i;
            }
        }
        (best / self.width.max(1), best % self.width.max(1))
    }

    /// The largest value.
    pub fn max(&self) -> f32 {
        self.values
            .iter()
            .copied()
            .fold(f32::NEG_INFINITY, f32::max)
    }

    /// The rows as nested vectors (for JSON).
    pub fn rows(&self) -> Vec<Vec<f32>> {
        self.values
            .chunks(self.width.max(1))
            .map(|r| r.to_vec())
            .collect()
    }
}

/// The per-pixel mean of `per_window` (one value per window position in `positions`) over the
/// windows covering each pixel.
pub(crate) fn average(
    height: usize,
    width: usize,
    window: &Window,
    positions: &[(usize, usize)],
    per_window: &[f32],
) -> Map {
    let mut sum = vec![0f64; height * width];
    let mut count = vec![0u32; height * width];
    for (&(y0, x0), &v) in positions.iter().zip(per_window) {
        for y in y0..y0 + window.height {
            let row = y * width;
            for x in x0..x0 + window.width {
                sum[row + x] += v as f64;
                count[row + x] += 1;
            }
        }
    }
    Map {
        height,
        width,
        values: sum
            .iter()
            .zip(&count)
            .map(|(&s, &c)| if c == 0 { 0.0 } else { (s / c as f64) as f32 })
            .collect(),
    }
}
