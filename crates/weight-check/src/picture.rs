//! Weights as pictures: convolution filters as a tile grid, matrices as a heat map.

use image::{Rgb, RgbImage};

/// The filters of a convolution weight `[out, in, kh, kw]` as a grid of tiles, each filter
/// normalised to its own range (as the AlexNet paper's figure 3). A filter with three input
/// channels is one RGB tile and one with a single input channel one grey tile, in a square grid;
/// otherwise each input channel is a grey tile, one row of tiles per output filter (at most
/// `max_inputs` channels shown). Each pixel is `scale` pixels wide; tiles
/// are separated by a 1-pixel dark line.
pub fn conv_filter_grid(
    values: &[f32],
    shape: [usize; 4],
    scale: u32,
    max_inputs: usize,
) -> RgbImage {
    let [out, inputs, kh, kw] = shape;
    let scale = scale.max(1);
    let rgb = inputs == 3;
    // One tile per filter (RGB, or grey for a single input channel) in a square grid; otherwise
    // a row of per-channel tiles per filter.
    let square = rgb || inputs == 1;
    let shown_inputs = if square {
        1
    } else {
        inputs.min(max_inputs.max(1))
    };
    let (cols, rows) = if square {
        let cols = (out as f64).sqrt().ceil().max(1.0) as usize;
        (cols, out.div_ceil(cols))
    } else {
        (shown_inputs, out)
    };
    let tile_w = kw as u32 * scale;
    let tile_h = kh as u32 * scale;
    let width = cols as u32 * (tile_w + 1) + 1;
    let height = rows as u32 * (tile_h + 1) + 1;
    let mut img = RgbImage::from_pixel(width.max(1), height.max(1), Rgb([40, 90, 160]));
    let plane = kh * kw;
    for o in 0..out {
        let filter = &values[o * inputs * plane..(o + 1) * inputs * plane];
        let (lo, hi) = filter
            .iter()
            .filter(|v| v.is_finite())
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &v| {
                (l.min(v), h.max(v))
            });
        let span = if hi > lo { hi - lo } else { 1.0 };
        let norm = |v: f32| {
            if v.is_finite() {
                (((v - lo) / span) * 255.0).round().clamp(0.0, 255.0) as u8
            } else {
                255
            }
        };
        let tiles: Vec<(usize, usize, Box<dyn Fn(usize, usize) -> Rgb<u8>>)> = if rgb {
            vec![(
                o % cols,
                o / cols,
                Box::new(move |y, x| {
                    Rgb([
                        norm(filter[y * kw + x]),
                        norm(filter[plane + y * kw + x]),
                        norm(filter[2 * plane + y * kw + x]),
                    ])
                }),
            )]
        } else if square {
            vec![(
                o % cols,
                o / cols,
                Box::new(move |y, x| {
                    let g = norm(filter[y * kw + x]);
                    Rgb([g, g, g])
                }),
            )]
        } else {
            (0..shown_inputs)
                .map(|c| {
                    let f: Box<dyn Fn(usize, usize) -> Rgb<u8>> = Box::new(move |y, x| {
                        let g = norm(filter[c * plane + y * kw + x]);
                        Rgb([g, g, g])
                    });
                    (c, o, f)
                })
                .collect()
        };
        for (col, row, pixel) in tiles {
            let x0 = col as u32 * (tile_w + 1) + 1;
            let y0 = row as u32 * (tile_h + 1) + 1;
            for y in 0..kh {
                for x in 0..kw {
                    let p = pixel(y, x);
                    for dy in 0..scale {
                        for dx in 0..scale {
                            img.put_pixel(
                                x0 + x as u32 * scale + dx,
                                y0 + y as u32 * scale + dy,
                                p,
                            );
                        }
                    }
                }
            }
        }
    }
    img
}

/// A matrix `rows x cols` (row-major) as a heat map: blue for negative, white for zero, red for
/// positive, scaled by the largest magnitude; at most `max_side` pixels per side (averaged
/// blocks beyond).
pub fn heat_map(values: &[f32], rows: usize, cols: usize, max_side: usize) -> RgbImage {
    let step_r = rows.div_ceil(max_side.max(1)).max(1);
    let step_c = cols.div_ceil(max_side.max(1)).max(1);
    let (h, w) = (rows.div_ceil(step_r), cols.div_ceil(step_c));
    let mut cells = vec![0f32; h * w];
    for (i, cell) in cells.iter_mut().enumerate() {
        let (r, c) = (i / w, i % w);
        let mut sum = 0f32;
        let mut n = 0;
        for rr in r * step_r..((r + 1) * step_r).min(rows) {
            for cc in c * step_c..((c + 1) * step_c).min(cols) {
                let v = values[rr * cols + cc];
                if v.is_finite() {
                    sum += v;
                    n += 1;
                }
            }
        }
        *cell = if n > 0 { sum / n as f32 } else { 0.0 };
    }
    let peak = cells.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
    RgbImage::from_fn(w.max(1) as u32, h.max(1) as u32, |x, y| {
        let v = cells
            .get(y as usize * w + x as usize)
            .copied()
            .unwrap_or(0.0)
            / peak;
        let t = (v.abs().min(1.0) * 255.0) as u8;
        if v >= 0.0 {
            Rgb([255, 255 - t, 255 - t])
        } else {
            Rgb([255 - t, 255 - t, 255])
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Every filter gets a tile; each tile spans black to white (its own range).
        #[test]
        fn grids_have_a_tile_per_filter(out in 1usize..20, inputs in prop_oneof![Just(1usize), Just(3), 2usize..6], k in 1usize..6, seed in any::<u32>()) {
            let n = out * inputs * k * k;
            let values: Vec<f32> = (0..n).map(|i| ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) % 1000) as f32 / 1000.0).collect();
            let img = conv_filter_grid(&values, [out, inputs, k, k], 2, 8);
            let tile = (k * 2 + 1) as u32;
            if inputs == 1 || inputs == 3 {
                let cols = (out as f64).sqrt().ceil() as u32;
                prop_assert_eq!(img.width(), cols * tile + 1);
                prop_assert_eq!(img.height(), (out as u32).div_ceil(cols) * tile + 1);
            } else {
                prop_assert_eq!(img.width(), inputs.min(8) as u32 * tile + 1);
                prop_assert_eq!(img.height(), out as u32 * tile + 1);
            }
        }
    }

    #[test]
    fn heat_map_colours_sign() {
        let img = heat_map(&[1.0, -1.0, 0.0, 0.5], 2, 2, 64);
        assert_eq!(img.get_pixel(0, 0).0, [255, 0, 0]);
        assert_eq!(img.get_pixel(1, 0).0, [0, 0, 255]);
        assert_eq!(img.get_pixel(0, 1).0, [255, 255, 255]);
    }
}
