//! Blob statistics of values in host memory, in one fused pass.
//!
//! The Tap's statistics (min, max, sum, sum |x|) of a blob whose memory is the host's (any blob
//! on Burn's CPU backend, flex, whose device memory *is* host memory) are computed here, reading
//! the tensor's own buffer in place: one pass instead of four reductions and an `abs` copy, no
//! read-back, no allocation. Large blobs are cut into chunks reduced in parallel (rayon); each
//! chunk keeps [`LANES`] independent f32 accumulators per statistic, so the loop vectorises
//! (AVX2 where the processor has it, SSE2 otherwise), and folds them into f64 every [`BLOCK`]
//! values. Chunks are combined in order, so the result does not depend on the thread count.
//!
//! NaN and Inf: the fast pass ignores them in min and max and lets them poison the sums; a blob
//! whose sum or sum |x| comes out non-finite is counted again, exactly, by
//! [`exact`] (NaN and Inf counts; min and max over the values that are not NaN; mean and mean
//! |x| NaN when any value is NaN).

use rayon::prelude::*;

use crate::tap::BlobStats;

/// Independent accumulators per statistic: four AVX2 registers, or eight SSE2 ones.
const LANES: usize = 32;
/// Values summed in f32 lanes before the lanes are folded into the f64 totals (32 per lane).
const BLOCK: usize = 1024;
/// Values per parallel task.
const CHUNK: usize = 1 << 16;

/// `[min, max, sum, sum |x|]` of some values; min and max skip NaN.
#[derive(Debug, Clone, Copy)]
struct Partial {
    min: f32,
    max: f32,
    sum: f64,
    abs: f64,
}

impl Partial {
    const EMPTY: Partial = Partial {
        min: f32::INFINITY,
        max: f32::NEG_INFINITY,
        sum: 0.0,
        abs: 0.0,
    };

    fn merge(self, other: Partial) -> Partial {
        Partial {
            min: if other.min < self.min {
                other.min
            } else {
                self.min
            },
            max: if other.max > self.max {
                other.max
            } else {
                self.max
            },
            sum: self.sum + other.sum,
            abs: self.abs + other.abs,
        }
    }
}

/// The fused loop over one chunk. `inline(always)` so that each `target_feature` wrapper below
/// compiles its own copy with its own instruction set.
#[inline(always)]
fn chunk_kernel(values: &[f32]) -> Partial {
    let mut total = Partial::EMPTY;
    for block in values.chunks(BLOCK) {
        let mut mn = [f32::INFINITY; LANES];
        let mut mx = [f32::NEG_INFINITY; LANES];
        let mut s = [0f32; LANES];
        let mut a = [0f32; LANES];
        let mut lanes = block.chunks_exact(LANES);
        for c in &mut lanes {
            for l in 0..LANES {
                let v = c[l];
                // `v < m ? v : m`: a NaN `v` never replaces `m` (one vector min instruction).
                mn[l] = if v < mn[l] { v } else { mn[l] };
                mx[l] = if v > mx[l] { v } else { mx[l] };
                s[l] += v;
                a[l] += v.abs();
            }
        }
        for (l, &v) in lanes.remainder().iter().enumerate() {
            mn[l] = if v < mn[l] { v } else { mn[l] };
            mx[l] = if v > mx[l] { v } else { mx[l] };
            s[l] += v;
            a[l] += v.abs();
        }
        let mut block_total = Partial::EMPTY;
        for l in 0..LANES {
            block_total = block_total.merge(Partial {
                min: mn[l],
                max: mx[l],
                sum: s[l] as f64,
                abs: a[l] as f64,
            });
        }
        total = total.merge(block_total);
    }
    total
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn chunk_avx2(values: &[f32]) -> Partial {
    chunk_kernel(values)
}

fn chunk(values: &[f32]) -> Partial {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the processor supports AVX2 (checked just above; the check is cached).
            return unsafe { chunk_avx2(values) };
        }
    }
    chunk_kernel(values)
}

/// Statistics of each blob in `blobs`, each in one fused pass, the large ones in parallel chunks.
pub(crate) fn stats_many(blobs: &[&[f32]]) -> Vec<BlobStats> {
    // Every chunk of every blob is one task; results come back in order.
    let tasks: Vec<(usize, &[f32])> = blobs
        .iter()
        .enumerate()
        .flat_map(|(i, b)| b.chunks(CHUNK).map(move |c| (i, c)))
        .collect();
    let partials: Vec<(usize, Partial)> = if tasks.len() > 1 {
        tasks
            .par_iter()
            .with_max_len(1)
            .map(|&(i, c)| (i, chunk(c)))
            .collect()
    } else {
        tasks.iter().map(|&(i, c)| (i, chunk(c))).collect()
    };
    let mut totals = vec![Partial::EMPTY; blobs.len()];
    for (i, p) in partials {
        totals[i] = totals[i].merge(p);
    }
    blobs
        .iter()
        .zip(totals)
        .map(|(values, p)| finish(values, p))
        .collect()
}

/// Statistics of `values` in one fused pass.
pub(crate) fn stats(values: &[f32]) -> BlobStats {
    stats_many(&[values]).pop().expect("one blob")
}

fn finish(values: &[f32], p: Partial) -> BlobStats {
    if !(p.sum.is_finite() && p.abs.is_finite()) {
        // A NaN or an Inf somewhere (or an f32 overflow in a lane): count them exactly.
        return exact(values);
    }
    let count = values.len();
    BlobStats {
        count,
        min: p.min,
        max: p.max,
        mean: (p.sum / count as f64) as f32,
        mean_abs: (p.abs / count as f64) as f32,
        nan: 0,
        inf: 0,
    }
}

/// Statistics of values on the host, NaN and Inf counted, in one plain (scalar) pass.
pub(crate) fn exact(values: &[f32]) -> BlobStats {
    let (mut min, mut max, mut sum, mut abs, mut nan, mut inf) =
        (f32::INFINITY, f32::NEG_INFINITY, 0f64, 0f64, 0u64, 0u64);
    for &v in values {
        if v.is_nan() {
            nan += 1;
            continue;
        }
        if v.is_infinite() {
            inf += 1;
        }
        min = min.min(v);
        max = max.max(v);
        sum += v as f64;
        abs += v.abs() as f64;
    }
    let count = values.len();
    let (mean, mean_abs) = if nan > 0 {
        (f32::NAN, f32::NAN)
    } else {
        ((sum / count as f64) as f32, (abs / count as f64) as f32)
    };
    if nan as usize == count {
        (min, max) = (f32::NAN, f32::NAN);
    }
    BlobStats {
        count,
        min,
        max,
        mean,
        mean_abs,
        nan,
        inf,
    }
}
