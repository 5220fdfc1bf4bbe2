//! Exact k-nearest neighbours, in parallel.
//!
//! Exists because two parts of the check need them: the t-SNE input similarities (the `3 x
//! perplexity` nearest neighbours of every point in PCA space) and the separability measures (the
//! `k` nearest neighbours in the map and in PCA space). Exact search by blocks: for many
//! dimensions a block of squared distances comes from one matrix product (`|x|^2 + |y|^2 - 2 x.y`),
//! for few (a 2-D map) it is computed directly. Rows are independent, so the result does not
//! depend on the number of threads.

use ndarray::{ArrayView2, Axis, s};
use rayon::prelude::*;

/// The `k` nearest neighbours of every row (itself excluded), nearest first.
#[derive(Debug, Clone, PartialEq)]
pub struct Neighbors {
    /// Neighbours per row.
    pub k: usize,
    /// `n x k` row indices, row-major.
    pub indices: Vec<u32>,
    /// `n x k` squared Euclidean distances, row-major, ascending within a row.
    pub sq_distances: Vec<f32>,
}

impl Neighbors {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.indices.len().checked_div(self.k).unwrap_or(0)
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }

    /// The neighbours of row `i`.
    pub fn of(&self, i: usize) -> &[u32] {
        &self.indices[i * self.k..(i + 1) * self.k]
    }

    /// The squared distances to the neighbours of row `i`.
    pub fn sq_distances_of(&self, i: usize) -> &[f32] {
        &self.sq_distances[i * self.k..(i + 1) * self.k]
    }
}

/// Rows handled per block: a block's distances are `BLOCK x n` floats.
const BLOCK: usize = 128;

/// The `k` nearest neighbours (Euclidean) of every row of `x`, `k` clamped to `n - 1`.
/// Ties are broken by the smaller index, so the result is fully deterministic.
pub fn knn(x: ArrayView2<'_, f32>, k: usize) -> Neighbors {
    let n = x.nrows();
    let k = k.min(n.saturating_sub(1));
    if n == 0 || k == 0 {
        return Neighbors {
            k,
            indices: Vec::new(),
            sq_distances: Vec::new(),
        };
    }
    let dims = x.ncols();
    let x = x.as_standard_layout().into_owned();
    let norms: Vec<f32> = x
        .axis_iter(Axis(0))
        .map(|r| r.iter().map(|v| v * v).sum())
        .collect();
    let mut indices = vec![0u32; n * k];
    let mut sq_distances = vec![0f32; n * k];
    indices
        .par_chunks_mut(BLOCK * k)
        .zip(sq_distances.par_chunks_mut(BLOCK * k))
        .enumerate()
        .for_each(|(b, (idx_out, dist_out))| {
            let start = b * BLOCK;
            let end = (start + BLOCK).min(n);
            let mut row_buf = vec![0f32; n];
            let mut cand: Vec<(f32, u32)> = Vec::with_capacity(n);
            let gram = if dims > 8 || dims == 0 {
                Some(x.slice(s![start..end, ..]).dot(&x.t()))
            } else {
                None
            };
            for i in start..end {
                let r = i - start;
                match &gram {
                    Some(g) => {
                        let gi = g.row(r);
                        for (j, d) in row_buf.iter_mut().enumerate() {
                            *d = (norms[i] + norms[j] - 2.0 * gi[j]).max(0.0);
                        }
                    }
                    None => {
                        let flat = x.as_slice().expect("standard layout");
                        let xi = &flat[i * dims..(i + 1) * dims];
                        for (d, xj) in row_buf.iter_mut().zip(flat.chunks_exact(dims)) {
                            *d = xi.iter().zip(xj).map(|(a, b)| (a - b) * (a - b)).sum();
                        }
                    }
                }
                row_buf[i] = f32::INFINITY;
                cand.clear();
                cand.extend(row_buf.iter().enumerate().map(|(j, &d)| (d, j as u32)));
                let cmp = |a: &(f32, u32), b: &(f32, u32)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1));
                if k < cand.len() {
                    cand.select_nth_unstable_by(k, cmp);
                }
                let best = &mut cand[..k];
                best.sort_unstable_by(cmp);
                for (t, &(d, j)) in best.iter().enumerate() {
                    idx_out[r * k + t] = j;
                    dist_out[r * k + t] = d;
                }
            }
        });
    Neighbors {
        k,
        indices,
        sq_distances,
    }
}

impl Neighbors {
    /// The first `k` neighbours of every row (all of them when `k >= self.k`).
    pub fn truncate(&self, k: usize) -> Neighbors {
        if k >= self.k {
            return self.clone();
        }
        let n = self.len();
        let mut indices = Vec::with_capacity(n * k);
        let mut sq_distances = Vec::with_capacity(n * k);
        for i in 0..n {
            indices.extend_from_slice(&self.of(i)[..k]);
            sq_distances.extend_from_slice(&self.sq_distances_of(i)[..k]);
        }
        Neighbors {
            k,
            indices,
            sq_distances,
        }
    }
}
