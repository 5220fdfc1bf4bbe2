//! Per-label mean images: their pixel value ranges, the distances between them, and pictures.
//!
//! Exists for the datasets whose map shows no clear separation: comparing the number ranges of
//! each label's mean image (and how far apart the means are) says whether the labels differ at
//! all in their pixels. Also draws the mean-image grid and the thumbnail sheet of candidate label
//! errors (PNG, `image` crate).

use std::path::Path;

use image::{Rgb, RgbImage};
use model_core::{MeanImage, MeanImages, SampleShape};
use serde::Serialize;

use crate::error::{DataCheckError, Result};

/// The value range of one mean image, in pixel units (0..=255).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MeanImageStats {
    /// `None` for the mean of every sample.
    pub label: Option<u8>,
    pub name: String,
    /// Samples averaged.
    pub count: usize,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    pub std: f64,
}

/// The distance between two labels' mean images.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MeanDistance {
    pub a: u8,
    pub b: u8,
    /// Euclidean distance in pixel units.
    pub distance: f64,
    /// Root mean square difference per pixel value (distance / sqrt(pixels)).
    pub rms: f64,
}

/// What the mean images say.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MeanImageSummary {
    /// One per label (labels without samples left out), then the overall mean.
    pub stats: Vec<MeanImageStats>,
    /// Every pair of labels with samples, `a < b`.
    pub distances: Vec<MeanDistance>,
    /// The pair whose means are closest.
    pub closest: Option<MeanDistance>,
}

/// Min, max, mean and standard deviation of one mean image.
pub fn stats(image: &MeanImage, name: impl Into<String>) -> MeanImageStats {
    let n = image.pixels.len().max(1) as f64;
    let (mut min, mut max, mut sum) = (f64::INFINITY, f64::NEG_INFINITY, 0.0);
    for &p in &image.pixels {
        let p = p as f64;
        min = min.min(p);
        max = max.max(p);
        sum += p;
    }
    let mean = sum / n;
    let var = image
        .pixels
        .iter()
        .map(|&p| (p as f64 - mean).powi(2))
        .sum::<f64>()
        / n;
    if image.pixels.is_empty() {
        min = f64::NAN;
        max = f64::NAN;
    }
    MeanImageStats {
        label: image.label,
        name: name.into(),
        count: image.count,
        min,
        max,
        mean,
        std: var.sqrt(),
    }
}

/// The statistics and pairwise distances of a set of mean images.
pub fn summarize(means: &MeanImages, names: &[String]) -> MeanImageSummary {
    let present: Vec<&MeanImage> = means.per_label.iter().filter(|m| m.count > 0).collect();
    let name = |l: Option<u8>| match l {
        Some(l) => names
            .get(l as usize)
            .cloned()
            .unwrap_or_else(|| l.to_string()),
        None => "all".to_string(),
    };
    let mut stats_out: Vec<MeanImageStats> =
        present.iter().map(|m| stats(m, name(m.label))).collect();
    stats_out.push(stats(&means.overall, "all"));
    let mut distances = Vec::new();
    for (x, a) in present.iter().enumerate() {
        for b in &present[x + 1..] {
            let d2: f64 = a
                .pixels
                .iter()
                .zip(&b.pixels)
                .map(|(&p, &q)| ((p - q) as f64).powi(2))
                .sum();
            let distance = d2.sqrt();
            distances.push(MeanDistance {
                a: a.label.unwrap_or(0),
                b: b.label.unwrap_or(0),
                distance,
                rms: distance / (a.pixels.len().max(1) as f64).sqrt(),
            });
        }
    }
    let closest = distances
        .iter()
        .min_by(|x, y| x.distance.total_cmp(&y.distance))
        .cloned();
    MeanImageSummary {
        stats: stats_out,
        distances,
        closest,
    }
}

/// Mean images per label from raw samples (`labels.len()` samples of `shape`, back to back).
pub fn mean_images(
    pixels: &[u8],
    shape: SampleShape,
    labels: &[u8],
    num_classes: usize,
) -> MeanImages {
    let len = shape.len();
    let classes = num_classes.max(labels.iter().map(|&l| l as usize + 1).max().unwrap_or(0));
    let mut sums = vec![vec![0u64; len]; classes];
    let mut counts = vec![0usize; classes];
    for (sample, &l) in pixels.chunks_exact(len.max(1)).zip(labels) {
        counts[l as usize] += 1;
        for (s, &p) in sums[l as usize].iter_mut().zip(sample) {
            *s += p as u64;
        }
    }
    let mut all = vec![0u64; len];
    for s in &sums {
        for (a, &v) in all.iter_mut().zip(s) {
            *a += v;
        }
    }
    let avg = |s: &[u64], c: usize| -> Vec<f32> {
        s.iter()
            .map(|&v| {
                if c == 0 {
                    0.0
                } else {
                    (v as f64 / c as f64) as f32
                }
            })
            .collect()
    };
    let total: usize = counts.iter().sum();
    MeanImages {
        per_label: (0..classes)
            .map(|l| MeanImage {
                label: Some(l as u8),
                count: counts[l],
                shape,
                pixels: avg(&sums[l], counts[l]),
            })
            .collect(),
        overall: MeanImage {
            label: None,
            count: total,
            shape,
            pixels: avg(&all, total),
        },
    }
}

/// Side (pixels) a tile is scaled up to at least.
const MIN_TILE: u32 = 64;
const GAP: u32 = 4;

fn tile_scale(shape: SampleShape) -> u32 {
    let side = shape.height.max(shape.width).max(1) as u32;
    MIN_TILE.div_ceil(side).max(1)
}

/// Draws one `C x H x W` image (values 0..=255) at `(x0, y0)`, scaled by `scale` (nearest).
fn blit(
    canvas: &mut RgbImage,
    shape: SampleShape,
    value: &dyn Fn(usize) -> f32,
    x0: u32,
    y0: u32,
    scale: u32,
) {
    let plane = shape.plane();
    for yy in 0..shape.height {
        for xx in 0..shape.width {
            let px = |c: usize| {
                value(c * plane + yy * shape.width + xx)
                    .clamp(0.0, 255.0)
                    .round() as u8
            };
            let rgb = if shape.channels >= 3 {
                [px(0), px(1), px(2)]
            } else {
                let g = px(0);
                [g, g, g]
            };
            for dy in 0..scale {
                for dx in 0..scale {
                    let (x, y) = (x0 + xx as u32 * scale + dx, y0 + yy as u32 * scale + dy);
                    if x < canvas.width() && y < canvas.height() {
                        canvas.put_pixel(x, y, Rgb(rgb));
                    }
                }
            }
        }
    }
}

pub(crate) fn save(canvas: &RgbImage, path: &Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| DataCheckError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    let mut bytes = Vec::new();
    canvas
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .map_err(|e| DataCheckError::Plot {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    model_core::write_atomic(path, &bytes).map_err(|source| DataCheckError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// A grid of the mean image of every label with samples, then the overall mean, in label order,
/// at most 10 per row, written as PNG to `path`.
pub fn mean_image_grid_png(means: &MeanImages, path: &Path) -> Result<()> {
    let tiles: Vec<&MeanImage> = means
        .per_label
        .iter()
        .filter(|m| m.count > 0)
        .chain(std::iter::once(&means.overall))
        .collect();
    let shape = means.overall.shape;
    let scale = tile_scale(shape);
    let (tw, th) = (shape.width as u32 * scale, shape.height as u32 * scale);
    let cols = tiles.len().clamp(1, 11) as u32;
    let rows = (tiles.len() as u32).div_ceil(cols);
    let mut canvas = RgbImage::from_pixel(
        cols * (tw + GAP) + GAP,
        rows * (th + GAP) + GAP,
        Rgb([255, 255, 255]),
    );
    for (t, m) in tiles.iter().enumerate() {
        let (c, r) = (t as u32 % cols, t as u32 / cols);
        let px = &m.pixels;
        blit(
            &mut canvas,
            shape,
            &|i| px.get(i).copied().unwrap_or(0.0),
            GAP + c * (tw + GAP),
            GAP + r * (th + GAP),
            scale,
        );
    }
    save(&canvas, path)
}

/// A sheet of sample thumbnails (`shape` samples back to back in `pixels`), 10 per row, as PNG.
pub fn thumbnails_png(pixels: &[u8], shape: SampleShape, path: &Path) -> Result<()> {
    let len = shape.len().max(1);
    let count = pixels.len() / len;
    let scale = tile_scale(shape).min(2);
    let (tw, th) = (shape.width as u32 * scale, shape.height as u32 * scale);
    let cols = count.clamp(1, 10) as u32;
    let rows = (count as u32).div_ceil(cols).max(1);
    let mut canvas = RgbImage::from_pixel(
        cols * (tw + GAP) + GAP,
        rows * (th + GAP) + GAP,
        Rgb([255, 255, 255]),
    );
    for (t, sample) in pixels.chunks_exact(len).enumerate() {
        let (c, r) = (t as u32 % cols, t as u32 / cols);
        blit(
            &mut canvas,
            shape,
            &|i| sample.get(i).copied().unwrap_or(0) as f32,
            GAP + c * (tw + GAP),
            GAP + r * (th + GAP),
            scale,
        );
    }
    save(&canvas, path)
}
