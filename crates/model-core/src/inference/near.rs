//! Inference near a reference image, for occlusion.
//!
//! Occlusion's inputs differ from one image only inside a window: occlusion and model impact
//! paint a window over the unoccluded input (or the mean image), the inverse mode shows a window
//! of the input on the all-fill image. A layer's output then differs from the reference's only
//! where its window reads a changed pixel; the changed region grows by the kernel at every layer
//! and covers the whole activation only deep in the network (incremental inference for
//! occlusion, as in Krypton: Nakandala, Kumar and Papakonstantinou, SIGMOD 2019).
//!
//! [`InferenceNet::reference`] runs the reference image once and keeps every op's output;
//! [`InferenceNet::forward_near`] finds the rectangle in which each input differs from it, and
//! per op copies the reference's output and recomputes only the rectangle the change reaches
//! (the union with the shortcut's rectangle for a residual convolution). A convolution whose
//! rectangles cover most of its output (deep layers) and the flat layers (global pool, fully
//! connected) run whole. Every recomputed pixel reads exactly the values the full forward reads,
//! and every copied pixel's inputs are the reference's, so the logits are the full forward's
//! (up to float rounding): the tests hold them to [`InferenceNet::forward_host`].

use std::ops::Range;

use rayon::prelude::*;

use super::{
    ConvOp, Dims, InferenceNet, Op, PixelCursor, PoolOp, Shortcut, ShortcutView, conv_forward,
    epilogue_row, group_product, patch_row, pool_pixel, tile_size,
};
use crate::dataset::SampleShape;

/// One image's output after every op of an [`InferenceNet`], for
/// [`InferenceNet::forward_near`].
#[derive(Debug, Clone)]
pub struct Reference {
    /// The image, channels first.
    image: Vec<f32>,
    /// Per op, its output for the image (channels-last; empty for `save`).
    outputs: Vec<Vec<f32>>,
}

impl Reference {
    /// The reference image, channels first.
    pub fn image(&self) -> &[f32] {
        &self.image
    }

    /// The reference image's logits.
    pub fn logits(&self) -> &[f32] {
        self.outputs.last().map_or(&[], Vec::as_slice)
    }
}

/// Rows `y0..y1` and columns `x0..x1` of an activation; empty when either range is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Region {
    y0: usize,
    y1: usize,
    x0: usize,
    x1: usize,
}

impl Region {
    const EMPTY: Region = Region {
        y0: 0,
        y1: 0,
        x0: 0,
        x1: 0,
    };

    fn full(d: Dims) -> Self {
        Region {
            y0: 0,
            y1: d.h,
            x0: 0,
            x1: d.w,
        }
    }

    fn is_empty(&self) -> bool {
        self.y0 >= self.y1 || self.x0 >= self.x1
    }

    fn pixels(&self) -> usize {
        if self.is_empty() {
            0
        } else {
            (self.y1 - self.y0) * (self.x1 - self.x0)
        }
    }

    fn union(self, other: Region) -> Region {
        if self.is_empty() {
            other
        } else if other.is_empty() {
            self
        } else {
            Region {
                y0: self.y0.min(other.y0),
                y1: self.y1.max(other.y1),
                x0: self.x0.min(other.x0),
                x1: self.x1.max(other.x1),
            }
        }
    }

    /// The output pixels of a sliding window (`kernel`, `stride`, top-left `pad`) that read a
    /// pixel of this region of the input.
    fn through(self, kernel: [usize; 2], stride: [usize; 2], pad: [usize; 2], out: Dims) -> Region {
        if self.is_empty() {
            return Region::EMPTY;
        }
        let (y0, y1) = reach(self.y0..self.y1, kernel[0], stride[0], pad[0], out.h);
        let (x0, x1) = reach(self.x0..self.x1, kernel[1], stride[1], pad[1], out.w);
        Region { y0, y1, x0, x1 }
    }

    /// The output pixels `(oy, ox)` that read input pixel `(oy * stride, ox * stride)` of this
    /// region (option A's subsampled shortcut).
    fn subsampled(self, stride: usize, out: Dims) -> Region {
        if self.is_empty() {
            return Region::EMPTY;
        }
        Region {
            y0: self.y0.div_ceil(stride).min(out.h),
            y1: self.y1.div_ceil(stride).min(out.h),
            x0: self.x0.div_ceil(stride).min(out.w),
            x1: self.x1.div_ceil(stride).min(out.w),
        }
    }
}

/// Along one axis: the outputs `o` (of `n`) whose window `o * stride - pad .. + kernel` meets
/// `input`, as `(first, end)`.
fn reach(
    input: Range<usize>,
    kernel: usize,
    stride: usize,
    pad: usize,
    n: usize,
) -> (usize, usize) {
    let first = (input.start + pad + 1)
        .saturating_sub(kernel)
        .div_ceil(stride);
    let end = (input.end - 1 + pad) / stride + 1;
    (first.min(n), end.min(n))
}

/// The rectangle (rows, columns) in which `image` differs from `reference`, both channels
/// first; a value differs when its bits do.
fn changed_region(shape: SampleShape, reference: &[f32], image: &[f32]) -> Region {
    let (h, w) = (shape.height, shape.width);
    let mut r = Region {
        y0: h,
        y1: 0,
        x0: w,
        x1: 0,
    };
    for (y, (a, b)) in reference
        .chunks_exact(w)
        .zip(image.chunks_exact(w))
        .enumerate()
    {
        let differs = |(p, q): (&f32, &f32)| p.to_bits() != q.to_bits();
        let Some(first) = a.iter().zip(b).position(differs) else {
            continue;
        };
        let last = a.iter().zip(b).rposition(differs).unwrap_or(first);
        let y = y % h;
        r = Region {
            y0: r.y0.min(y),
            y1: r.y1.max(y + 1),
            x0: r.x0.min(first),
            x1: r.x1.max(last + 1),
        };
    }
    if r.is_empty() { Region::EMPTY } else { r }
}

impl InferenceNet {
    /// Runs `image` (one image, channels first) and keeps every op's output: the reference that
    /// [`Self::forward_near`] computes its neighbours from.
    ///
    /// # Panics
    /// When `image` does not hold one image of the input shape.
    pub fn reference(&self, image: &[f32]) -> Reference {
        assert_eq!(
            image.len(),
            self.input.len(),
            "reference: one image of {}",
            self.input
        );
        let x = self.channels_last(image);
        let mut outputs = Vec::with_capacity(self.ops.len());
        let logits = self.run(&self.ops, x, 1, true, Some(&mut outputs));
        self.recycle(logits);
        Reference {
            image: image.to_vec(),
            outputs,
        }
    }

    /// Logits `[batch * classes]` for `images` (channels first), as [`Self::forward_host`]
    /// gives them, recomputing of each image only what its difference from `reference` reaches;
    /// see the module documentation. Fast when the images differ from the reference in a small
    /// window, correct for any images.
    ///
    /// # Panics
    /// When `images` does not hold `batch` images of the input shape, or `reference` was made by
    /// another net.
    pub fn forward_near(&self, reference: &Reference, images: &[f32], batch: usize) -> Vec<f32> {
        let per_image = self.input.len();
        assert_eq!(
            images.len(),
            batch * per_image,
            "forward_near: {batch} images of {}",
            self.input
        );
        assert!(
            reference.image.len() == per_image && reference.outputs.len() == self.ops.len(),
            "forward_near: a reference made by another net"
        );
        let regions: Vec<Region> = images
            .chunks_exact(per_image)
            .map(|image| changed_region(self.input, &reference.image, image))
            .collect();
        self.forward_split(images, batch, |ops, first, x, n, par| {
            self.run_near(
                ops,
                &reference.outputs,
                x,
                regions[first..first + n].to_vec(),
                par,
            )
        })
    }

    /// The multiply-adds [`Self::forward_near`] spends on `image` (one image, channels first)
    /// when it comes alone, against the whole forward's: what the incremental engine saves for
    /// one occluded copy.
    ///
    /// # Panics
    /// When `image` is not one image of the input shape, or `reference` was made by another net.
    pub fn near_work(&self, reference: &Reference, image: &[f32]) -> NearWork {
        assert_eq!(image.len(), self.input.len(), "near_work: one image");
        assert_eq!(
            reference.image.len(),
            image.len(),
            "near_work: another net's reference"
        );
        let mut regions = vec![changed_region(self.input, &reference.image, image)];
        let mut saved: Option<Vec<Region>> = None;
        let mut work = NearWork {
            whole: 0,
            incremental: 0,
        };
        for op in &self.ops {
            match op {
                Op::Save => saved = Some(regions.clone()),
                Op::Conv(conv) => {
                    let per_pixel = (conv.patch_len() * conv.output.c) as u64;
                    let whole = (conv.output.h * conv.output.w) as u64 * per_pixel;
                    let changed = conv_changed(conv, &regions, saved.as_ref());
                    work.whole += whole;
                    work.incremental += if runs_whole(conv, &changed) {
                        whole
                    } else {
                        changed[0].pixels() as u64 * per_pixel
                    };
                    if conv.shortcut.is_some() {
                        saved = None;
                    }
                    regions = changed;
                }
                Op::MaxPool(pool) => {
                    regions =
                        vec![regions[0].through(pool.kernel, pool.stride, [0, 0], pool.output)];
                }
                Op::GlobalAvgPool { .. } => {}
                Op::Linear(l) => {
                    work.whole += (l.din * l.dout) as u64;
                    work.incremental += (l.din * l.dout) as u64;
                }
            }
        }
        work
    }

    /// `ops` (the first ones of the net) over the channels-last images `input`, image `b`
    /// differing from the reference in `regions[b]`.
    fn run_near(
        &self,
        ops: &[Op],
        reference: &[Vec<f32>],
        input: Vec<f32>,
        mut regions: Vec<Region>,
        par: bool,
    ) -> Vec<f32> {
        let batch = regions.len();
        let mut cur = input;
        // The shortcut's activation and the rectangles in which it differs.
        let mut saved: Option<(Vec<f32>, Vec<Region>)> = None;
        for (op, reference) in ops.iter().zip(reference) {
            match op {
                Op::Save => saved = Some((std::mem::take(&mut cur), regions.clone())),
                Op::Conv(conv) => {
                    let changed = conv_changed(conv, &regions, saved.as_ref().map(|(_, r)| r));
                    let mut out = self.buffer(batch * conv.output.len());
                    let saved_values = saved.as_ref().map(|(v, _)| v.as_slice());
                    let input: &[f32] = if cur.is_empty() {
                        saved_values.unwrap_or(&[])
                    } else {
                        &cur
                    };
                    let shortcut = conv
                        .shortcut
                        .map(|(s, dims)| (s, dims, saved_values.expect("a saved shortcut")));
                    if runs_whole(conv, &changed) {
                        conv_forward(conv, input, shortcut, &mut out, batch, par);
                    } else {
                        copy_unchanged(&mut out, reference, &changed, conv.output);
                        conv_region(conv, input, shortcut, &mut out, &changed, par);
                    }
                    if conv.shortcut.is_some()
                        && let Some((s, _)) = saved.take()
                    {
                        self.recycle(s);
                    }
                    let old = std::mem::replace(&mut cur, out);
                    self.recycle(old);
                    regions = changed;
                }
                Op::MaxPool(pool) => {
                    let changed: Vec<Region> = regions
                        .iter()
                        .map(|r| r.through(pool.kernel, pool.stride, [0, 0], pool.output))
                        .collect();
                    let mut out = self.buffer(batch * pool.output.len());
                    copy_unchanged(&mut out, reference, &changed, pool.output);
                    pool_region(pool, &cur, &mut out, &changed);
                    let old = std::mem::replace(&mut cur, out);
                    self.recycle(old);
                    regions = changed;
                }
                // Flat from here on (a global pool or a fully connected layer): every value may
                // change, so the op runs whole.
                flat => self.step(flat, &mut cur, &mut None, batch, par),
            }
        }
        if let Some((s, _)) = saved {
            self.recycle(s);
        }
        cur
    }
}

/// The rectangles in which a convolution's output differs from the reference's, per image: where
/// its window reads a changed input pixel, and (a residual convolution) where its shortcut adds
/// one (`saved`: the rectangles of the shortcut's activation).
fn conv_changed(conv: &ConvOp, regions: &[Region], saved: Option<&Vec<Region>>) -> Vec<Region> {
    regions
        .iter()
        .enumerate()
        .map(|(b, r)| {
            let o = r.through(conv.kernel, conv.stride, conv.pad, conv.output);
            let from_shortcut = match (conv.shortcut, saved) {
                (Some((Shortcut::Identity, _)), Some(s)) => s[b],
                (Some((Shortcut::SubsamplePad { stride, .. }, _)), Some(s)) => {
                    s[b].subsampled(stride, conv.output)
                }
                _ => Region::EMPTY,
            };
            o.union(from_shortcut)
        })
        .collect()
}

/// Whether a convolution whose outputs change in `changed` runs whole: when they cover most of
/// its output, the whole op, written in place, costs less than copying the reference and
/// scattering the products.
fn runs_whole(conv: &ConvOp, changed: &[Region]) -> bool {
    let plane = conv.output.h * conv.output.w;
    let pixels: usize = changed.iter().map(Region::pixels).sum();
    pixels * 5 >= changed.len() * plane * 4
}

/// Multiply-adds of one forward, whole and as [`InferenceNet::forward_near`] computes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NearWork {
    /// The whole forward's multiply-adds (convolutions and fully connected layers).
    pub whole: u64,
    /// The incremental forward's: the changed rectangles of the convolutions (or the whole
    /// convolution where [`InferenceNet::forward_near`] runs it whole), the fully connected
    /// layers whole.
    pub incremental: u64,
}

/// The reference's output into every image's slot that is not recomputed whole.
fn copy_unchanged(out: &mut [f32], reference: &[f32], changed: &[Region], dims: Dims) {
    for (dst, r) in out.chunks_exact_mut(dims.len()).zip(changed) {
        if *r != Region::full(dims) {
            dst.copy_from_slice(reference);
        }
    }
}

/// The convolution's output pixels inside `changed[b]` of every image `b`, into `out` (the
/// other pixels are left as they are). The pixels go through im2col and the product in tiles of
/// whole region rows, shared between the threads when `par`.
fn conv_region(
    op: &ConvOp,
    input: &[f32],
    shortcut: Option<ShortcutView<'_>>,
    out: &mut [f32],
    changed: &[Region],
    par: bool,
) {
    let Dims {
        h: oh,
        w: ow,
        c: cout,
    } = op.output;
    let k = op.patch_len();
    // One run per region row: its first pixel and its length.
    let runs: Vec<(PixelCursor, usize)> = changed
        .iter()
        .enumerate()
        .filter(|(_, r)| !r.is_empty())
        .flat_map(|(b, r)| {
            (r.y0..r.y1).map(move |oy| (PixelCursor { b, oy, ox: r.x0 }, r.x1 - r.x0))
        })
        .collect();
    let total: usize = runs.iter().map(|r| r.1).sum();
    if total == 0 {
        return;
    }
    let target = tile_size(k, total, par);
    let mut tiles: Vec<Range<usize>> = Vec::new();
    let (mut start, mut rows) = (0, 0);
    for (i, run) in runs.iter().enumerate() {
        rows += run.1;
        if rows >= target {
            tiles.push(start..i + 1);
            (start, rows) = (i + 1, 0);
        }
    }
    if start < runs.len() {
        tiles.push(start..runs.len());
    }
    let tile_work = |col: &mut Vec<f32>, runs: &[(PixelCursor, usize)]| -> Vec<f32> {
        let rows: usize = runs.iter().map(|r| r.1).sum();
        let mut product = vec![0f32; rows * cout];
        col.resize(rows * k, 0.0);
        for g in 0..op.groups {
            let mut patch = col.chunks_exact_mut(k);
            for &(first, len) in runs {
                for ox in first.ox..first.ox + len {
                    let at = PixelCursor { ox, ..first };
                    patch_row(op, input, g, at, patch.next().expect("a row per pixel"));
                }
            }
            group_product(op, g, col, rows, &mut product);
        }
        let mut o = product.chunks_exact_mut(cout);
        for &(first, len) in runs {
            for ox in first.ox..first.ox + len {
                let at = PixelCursor { ox, ..first };
                epilogue_row(op, o.next().expect("a row per pixel"), shortcut, at);
            }
        }
        product
    };
    let products: Vec<Vec<f32>> = if par {
        tiles
            .par_iter()
            .map_init(Vec::new, |col, t| tile_work(col, &runs[t.clone()]))
            .collect()
    } else {
        let mut col = Vec::new();
        tiles
            .iter()
            .map(|t| tile_work(&mut col, &runs[t.clone()]))
            .collect()
    };
    for (t, product) in tiles.iter().zip(products) {
        let mut at = 0;
        for &(first, len) in &runs[t.clone()] {
            let p = (first.b * oh + first.oy) * ow + first.ox;
            out[p * cout..(p + len) * cout].copy_from_slice(&product[at * cout..(at + len) * cout]);
            at += len;
        }
    }
}

/// The pool's output pixels inside `changed[b]` of every image `b`, into `out`.
fn pool_region(op: &PoolOp, input: &[f32], out: &mut [f32], changed: &[Region]) {
    let Dims { w: ow, c, .. } = op.output;
    for ((dst, src), r) in out
        .chunks_exact_mut(op.output.len())
        .zip(input.chunks_exact(op.input.len()))
        .zip(changed)
    {
        for oy in r.y0..r.y1 {
            for ox in r.x0..r.x1 {
                let p = oy * ow + ox;
                pool_pixel(op, src, &mut dst[p * c..(p + 1) * c], oy, ox);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dims(h: usize, w: usize) -> Dims {
        Dims { h, w, c: 1 }
    }

    /// `reach` against a brute-force scan of every output's window.
    #[test]
    fn reach_is_the_outputs_whose_window_meets_the_input() {
        for n_in in 1..9usize {
            for kernel in 1..4 {
                for stride in 1..3 {
                    for pad in 0..2 {
                        let Some(n) = super::super::out_size(n_in, kernel, stride, 2 * pad) else {
                            continue;
                        };
                        for lo in 0..n_in {
                            for hi in lo + 1..=n_in {
                                let want: Vec<usize> = (0..n)
                                    .filter(|&o| {
                                        (0..kernel).any(|k| {
                                            let i = (o * stride + k) as isize - pad as isize;
                                            i >= lo as isize && i < hi as isize
                                        })
                                    })
                                    .collect();
                                let (first, end) = reach(lo..hi, kernel, stride, pad, n);
                                let got: Vec<usize> = (first..end).collect();
                                assert_eq!(got, want, "{lo}..{hi} k{kernel} s{stride} p{pad}");
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn changed_region_bounds_every_difference_over_the_channels() {
        let shape = SampleShape {
            channels: 2,
            height: 4,
            width: 5,
        };
        let reference = vec![0.5f32; shape.len()];
        assert_eq!(changed_region(shape, &reference, &reference), Region::EMPTY);
        let mut image = reference.clone();
        image[5 + 1] = 0.0; // channel 0, (1, 1)
        image[20 + 3 * 5 + 3] = 0.0; // channel 1, (3, 3)
        assert_eq!(
            changed_region(shape, &reference, &image),
            Region {
                y0: 1,
                y1: 4,
                x0: 1,
                x1: 4
            }
        );
        let mut nan = reference.clone();
        nan[0] = f32::NAN;
        assert_eq!(changed_region(shape, &reference, &nan).y1, 1);
    }

    #[test]
    fn subsampled_and_union() {
        let r = Region {
            y0: 3,
            y1: 6,
            x0: 0,
            x1: 1,
        };
        // Outputs 2 (reads 4) and 3 (reads 6: outside) along y; 0 along x.
        assert_eq!(
            r.subsampled(2, dims(4, 4)),
            Region {
                y0: 2,
                y1: 3,
                x0: 0,
                x1: 1
            }
        );
        assert_eq!(r.union(Region::EMPTY), r);
        assert_eq!(Region::EMPTY.union(r), r);
    }
}
