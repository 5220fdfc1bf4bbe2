//! Pictures and raw files of the maps: heat maps overlaid on the image, the label map with its
//! legend, and NPY files of the raw maps (NumPy's format, readable with `numpy.load`).
//!
//! Everything is drawn pixel by pixel with the `image` crate, enlarged by nearest neighbour so a
//! 28x28 map stays legible; the legend's label numbers use a built-in 3x5 digit font, so nothing
//! depends on the fonts a machine has.

use std::path::Path;

use image::{Rgb, RgbImage};

use crate::error::ImpactError;
use crate::geometry::Map;

/// The pixels of an image for display: `C x H x W` values in 0..=255 (1 channel: grey, 3: RGB,
/// others: the first channel).
#[derive(Debug, Clone, PartialEq)]
pub struct Picture {
    pub height: usize,
    pub width: usize,
    /// Row-major RGB.
    pub rgb: Vec<[u8; 3]>,
}

impl Picture {
    /// From pixel values in 0..=255, `channels x height x width`.
    pub fn from_pixels(pixels: &[f32], channels: usize, height: usize, width: usize) -> Self {
        let plane = height * width;
        let at = |c: usize, i: usize| {
            pixels
                .get(c * plane + i)
                .copied()
                .unwrap_or(0.0)
                .clamp(0.0, 255.0) as u8
        };
        let rgb = (0..plane)
            .map(|i| {
                if channels == 3 {
                    [at(0, i), at(1, i), at(2, i)]
                } else {
                    let g = at(0, i);
                    [g, g, g]
                }
            })
            .collect();
        Picture { height, width, rgb }
    }

    /// A non-image input (any values), scaled from its minimum to its maximum, first channel.
    pub fn from_values(values: &[f32], height: usize, width: usize) -> Self {
        let plane = &values[..(height * width).min(values.len())];
        let lo = plane.iter().copied().fold(f32::INFINITY, f32::min);
        let hi = plane.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let span = if hi > lo { hi - lo } else { 1.0 };
        let scaled: Vec<f32> = plane.iter().map(|v| (v - lo) / span * 255.0).collect();
        Picture::from_pixels(&scaled, 1, height, width)
    }
}

impl Picture {
    /// `rect`'s edge pixels tinted green (the object's region).
    pub fn outline(&mut self, rect: &crate::region::Rect) {
        if rect.area() == 0 {
            return;
        }
        for y in rect.top..rect.bottom {
            for x in rect.left..rect.right {
                let edge =
                    y == rect.top || y + 1 == rect.bottom || x == rect.left || x + 1 == rect.right;
                if edge && y < self.height && x < self.width {
                    let p = &mut self.rgb[y * self.width + x];
                    *p = blend(*p, [0, 220, 0], 0.6);
                }
            }
        }
    }
}

/// The ten colours of the label map (matplotlib's `tab10`); more labels cycle through hues.
pub fn label_color(label: usize) -> [u8; 3] {
    const TAB10: [[u8; 3]; 10] = [
        [31, 119, 180],
        [255, 127, 14],
        [44, 160, 44],
        [214, 39, 40],
        [148, 103, 189],
        [140, 86, 75],
        [227, 119, 194],
        [127, 127, 127],
        [188, 189, 34],
        [23, 190, 207],
    ];
    if label < 10 {
        return TAB10[label];
    }
    let h = (label as f32 * 0.618_034).fract() * 6.0;
    let x = (1.0 - ((h % 2.0) - 1.0).abs()) * 255.0;
    let (r, g, b) = match h as u32 {
        0 => (255.0, x, 0.0),
        1 => (x, 255.0, 0.0),
        2 => (0.0, 255.0, x),
        3 => (0.0, x, 255.0),
        4 => (x, 0.0, 255.0),
        _ => (255.0, 0.0, x),
    };
    [r as u8, g as u8, b as u8]
}

fn blend(base: [u8; 3], over: [u8; 3], alpha: f32) -> [u8; 3] {
    let a = alpha.clamp(0.0, 1.0);
    std::array::from_fn(|i| (base[i] as f32 * (1.0 - a) + over[i] as f32 * a).round() as u8)
}

/// `picture` (in grey) with `map` overlaid: positive values in red, negative in blue, opacity by
/// `|value| / scale` (`scale` 0: the map's largest magnitude).
pub fn overlay(picture: &Picture, map: &Map, scale: f32) -> Picture {
    let scale = if scale > 0.0 {
        scale
    } else {
        map.values
            .iter()
            .fold(0f32, |m, v| m.max(v.abs()))
            .max(1e-12)
    };
    let rgb = picture
        .rgb
        .iter()
        .zip(&map.values)
        .map(|(&p, &v)| {
            // The picture in grey, dimmed, so the colours of the map read on any image.
            let luma = (0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32) as u8;
            let dim = blend([luma; 3], [0, 0, 0], 0.35);
            if v >= 0.0 {
                blend(dim, [255, 40, 0], 0.85 * v / scale)
            } else {
                blend(dim, [0, 90, 255], 0.85 * -v / scale)
            }
        })
        .collect();
    Picture {
        height: picture.height,
        width: picture.width,
        rgb,
    }
}

fn enlarge(p: &Picture, factor: u32) -> RgbImage {
    let f = factor.max(1);
    RgbImage::from_fn(p.width as u32 * f, p.height as u32 * f, |x, y| {
        Rgb(p.rgb[(y / f) as usize * p.width + (x / f) as usize])
    })
}

/// The enlargement that makes the longer side about 200 pixels.
pub fn default_factor(height: usize, width: usize) -> u32 {
    (200 / height.max(width).max(1)).clamp(1, 16) as u32
}

/// Pictures side by side, enlarged by `factor`, `gap` white pixels apart.
pub fn strip(pictures: &[Picture], factor: u32, gap: u32) -> RgbImage {
    let tiles: Vec<RgbImage> = pictures.iter().map(|p| enlarge(p, factor)).collect();
    let width =
        tiles.iter().map(|t| t.width()).sum::<u32>() + gap * tiles.len().saturating_sub(1) as u32;
    let height = tiles.iter().map(|t| t.height()).max().unwrap_or(1);
    let mut out = RgbImage::from_pixel(width.max(1), height, Rgb([255, 255, 255]));
    let mut x0 = 0;
    for t in &tiles {
        image::imageops::replace(&mut out, t, x0 as i64, 0);
        x0 += t.width() + gap;
    }
    out
}

/// The base picture (when given), the label map (each pixel in its label's colour, brighter where the rise is stronger; black
/// where no window reaches), the strength map beside it, and a legend of label numbers.
pub fn label_map_image(
    base: Option<&Picture>,
    labels: &[i32],
    strength: &Map,
    classes: usize,
    factor: u32,
) -> RgbImage {
    let max = strength
        .values
        .iter()
        .fold(0f32, |m, &v| m.max(v))
        .max(1e-12);
    let colored = Picture {
        height: strength.height,
        width: strength.width,
        rgb: labels
            .iter()
            .zip(&strength.values)
            .map(|(&l, &s)| {
                if l < 0 {
                    [0, 0, 0]
                } else {
                    blend(
                        [0, 0, 0],
                        label_color(l as usize),
                        0.35 + 0.65 * (s / max).max(0.0),
                    )
                }
            })
            .collect(),
    };
    let grey = Picture {
        height: strength.height,
        width: strength.width,
        rgb: vec![[0, 0, 0]; strength.values.len()],
    };
    let heat = overlay(&grey, strength, max);
    let mut panels: Vec<Picture> = base.into_iter().cloned().collect();
    panels.extend([colored, heat]);
    let maps = strip(&panels, factor, 4);
    // Legend: a swatch and the label number per row.
    let row_h = 16u32;
    let legend_w = 48u32;
    let height = maps.height().max(row_h * classes as u32 + 4);
    let mut out = RgbImage::from_pixel(maps.width() + 8 + legend_w, height, Rgb([255, 255, 255]));
    image::imageops::replace(&mut out, &maps, 0, 0);
    let x0 = maps.width() + 8;
    for l in 0..classes {
        let y0 = 2 + l as u32 * row_h;
        for y in y0..y0 + 12 {
            for x in x0..x0 + 12 {
                out.put_pixel(x, y, Rgb(label_color(l)));
            }
        }
        draw_number(&mut out, l, x0 + 16, y0 + 1, 2);
    }
    out
}

/// Draws `n` in a 3x5 digit font, each font pixel `scale` pixels wide.
fn draw_number(img: &mut RgbImage, n: usize, x0: u32, y0: u32, scale: u32) {
    const DIGITS: [[u8; 5]; 10] = [
        [0b111, 0b101, 0b101, 0b101, 0b111],
        [0b010, 0b110, 0b010, 0b010, 0b111],
        [0b111, 0b001, 0b111, 0b100, 0b111],
        [0b111, 0b001, 0b111, 0b001, 0b111],
        [0b101, 0b101, 0b111, 0b001, 0b001],
        [0b111, 0b100, 0b111, 0b001, 0b111],
        [0b111, 0b100, 0b111, 0b101, 0b111],
        [0b111, 0b001, 0b001, 0b001, 0b001],
        [0b111, 0b101, 0b111, 0b101, 0b111],
        [0b111, 0b101, 0b111, 0b001, 0b111],
    ];
    for (k, ch) in n.to_string().bytes().enumerate() {
        let glyph = DIGITS[(ch - b'0') as usize];
        let gx = x0 + k as u32 * 4 * scale;
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..3u32 {
                if bits & (0b100 >> col) != 0 {
                    for dy in 0..scale {
                        for dx in 0..scale {
                            let (x, y) = (gx + col * scale + dx, y0 + row as u32 * scale + dy);
                            if x < img.width() && y < img.height() {
                                img.put_pixel(x, y, Rgb([0, 0, 0]));
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Saves a PNG.
pub fn save_png(img: &RgbImage, path: &Path) -> Result<(), ImpactError> {
    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )
    .map_err(|e| ImpactError::io(path, e))?;
    model_core::write_atomic(path, &bytes).map_err(|e| ImpactError::io(path, e))
}

/// A map as a NumPy `.npy` file (`<f4`, shape `(height, width)`).
pub fn npy_bytes(map: &Map) -> Vec<u8> {
    let header = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, {}), }}",
        map.height, map.width
    );
    // Magic (6) + version (2) + header length (2) + header + padding + '\n', a multiple of 64.
    let unpadded = 10 + header.len() + 1;
    let padded = unpadded.div_ceil(64) * 64;
    let mut out = Vec::with_capacity(padded + 4 * map.values.len());
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&((padded - 10) as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend(std::iter::repeat_n(b' ', padded - unpadded));
    out.push(b'\n');
    for v in &map.values {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}
