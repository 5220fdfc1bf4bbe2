//! Where the object is, and how much of the evidence lies on it.
//!
//! A map that puts the label's evidence in the border or the background is the classic sign of a
//! model that learnt the wrong thing (a watermark, a frame, the sky behind the plane). The check
//! measures the share of the positive impact mass (the occlusion map's probability drops) that
//! falls inside the object's region: for single-channel images such as MNIST the bounding box of
//! the pixels brighter than a threshold, elsewhere the image less a border band.

use serde::{Deserialize, Serialize};

use crate::geometry::Map;

/// How the object's region is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Region {
    /// Single-channel images: the bounding box of pixels above `threshold` (0..=255); others:
    /// the image less a border band of `band` pixels (`None`: an eighth of the smaller side).
    Auto { threshold: u8, band: Option<usize> },
    /// The bounding box of pixels (any channel) above `threshold`.
    BoundingBox { threshold: u8 },
    /// The image less a band of `band` pixels along every edge.
    Border { band: usize },
    /// A given rectangle (clipped to the image).
    Fixed(Rect),
}

impl Default for Region {
    fn default() -> Self {
        Region::Auto {
            threshold: 0,
            band: None,
        }
    }
}

/// A rectangle of rows `top..bottom` and columns `left..right` (exclusive ends).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rect {
    pub top: usize,
    pub left: usize,
    pub bottom: usize,
    pub right: usize,
}

impl Rect {
    pub fn contains(&self, y: usize, x: usize) -> bool {
        y >= self.top && y < self.bottom && x >= self.left && x < self.right
    }

    pub fn area(&self) -> usize {
        self.bottom.saturating_sub(self.top) * self.right.saturating_sub(self.left)
    }
}

impl Region {
    /// The object's rectangle in an image of `pixels` (`C x H x W`, 0..=255, as floats so the
    /// mean image works too). An image with no pixel above the threshold gives the whole image.
    pub fn locate(&self, pixels: &[f32], channels: usize, height: usize, width: usize) -> Rect {
        let whole = Rect {
            top: 0,
            left: 0,
            bottom: height,
            right: width,
        };
        let border = |band: Option<usize>| {
            let band = band.unwrap_or(height.min(width) / 8);
            // Never less than one pixel inside.
            let by = band.min((height - 1) / 2);
            let bx = band.min((width - 1) / 2);
            Rect {
                top: by,
                left: bx,
                bottom: height - by,
                right: width - bx,
            }
        };
        let bbox = |threshold: u8| {
            let plane = height * width;
            let (mut top, mut left, mut bottom, mut right) = (height, width, 0, 0);
            for y in 0..height {
                for x in 0..width {
                    let on = (0..channels).any(|c| {
                        pixels
                            .get(c * plane + y * width + x)
                            .is_some_and(|&v| v > threshold as f32)
                    });
                    if on {
                        top = top.min(y);
                        left = left.min(x);
                        bottom = bottom.max(y + 1);
                        right = right.max(x + 1);
                    }
                }
            }
            if bottom == 0 {
                whole
            } else {
                Rect {
                    top,
                    left,
                    bottom,
                    right,
                }
            }
        };
        if height == 0 || width == 0 {
            return whole;
        }
        match *self {
            Region::Auto { threshold, band } => {
                if channels == 1 {
                    bbox(threshold)
                } else {
                    border(band)
                }
            }
            Region::BoundingBox { threshold } => bbox(threshold),
            Region::Border { band } => border(Some(band)),
            Region::Fixed(r) => Rect {
                top: r.top.min(height),
                left: r.left.min(width),
                bottom: r.bottom.min(height),
                right: r.right.min(width),
            },
        }
    }
}

/// The share of the positive mass of `map` that lies inside `rect`; 1 when the map has no
/// positive mass (no evidence anywhere, so none outside the object).
pub fn inside_share(map: &Map, rect: &Rect) -> f64 {
    let (mut inside, mut total) = (0f64, 0f64);
    for y in 0..map.height {
        for x in 0..map.width {
            let v = map.get(y, x);
            if v > 0.0 && v.is_finite() {
                total += v as f64;
                if rect.contains(y, x) {
                    inside += v as f64;
                }
            }
        }
    }
    if total <= 0.0 { 1.0 } else { inside / total }
}
