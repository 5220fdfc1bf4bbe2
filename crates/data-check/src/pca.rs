//! Principal component analysis in pure Rust.
//!
//! Exists because t-SNE (and the k-NN accuracy in "PCA space") work on the first 50 principal
//! components rather than on raw pixels: distances are cheaper and less noisy. No BLAS or LAPACK:
//! randomized subspace iteration (Halko, Martinsson & Tropp 2011) with a few power steps finds the
//! leading subspace with matrix products (ndarray, blocks in parallel), and a cyclic Jacobi
//! eigen-solver diagonalises the small projected matrix. Seeded, so the components are
//! reproducible.

use ndarray::{Array1, Array2, ArrayView2, Axis, s};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

/// A fitted PCA: the mean and the leading components.
#[derive(Debug, Clone, PartialEq)]
pub struct Pca {
    /// Mean of every input column.
    pub mean: Array1<f32>,
    /// `k x d`: one unit-length component per row, by decreasing variance.
    pub components: Array2<f32>,
    /// Variance along each component.
    pub explained_variance: Vec<f64>,
    /// Total variance of the input (sum over columns).
    pub total_variance: f64,
}

impl Pca {
    /// Share of the total variance the components keep.
    pub fn explained_ratio(&self) -> f64 {
        if self.total_variance > 0.0 {
            self.explained_variance.iter().sum::<f64>() / self.total_variance
        } else {
            1.0
        }
    }

    /// Projects `x` (`n x d`) onto the components: `n x k`.
    pub fn transform(&self, x: ArrayView2<'_, f32>) -> Array2<f32> {
        let centered = &x - &self.mean.view().insert_axis(Axis(0));
        par_dot(centered.view(), self.components.t())
    }
}

/// Rows per block of the parallel products (fixed, so results do not depend on thread count).
const ROWS: usize = 1024;

/// `a x b` with the rows of `a` split into blocks computed in parallel.
pub(crate) fn par_dot(a: ArrayView2<'_, f32>, b: ArrayView2<'_, f32>) -> Array2<f32> {
    let mut out = Array2::<f32>::zeros((a.nrows(), b.ncols()));
    let outs: Vec<_> = out.axis_chunks_iter_mut(Axis(0), ROWS).collect();
    let ins: Vec<_> = a.axis_chunks_iter(Axis(0), ROWS).collect();
    outs.into_par_iter()
        .zip(ins.into_par_iter())
        .for_each(|(mut o, a)| o.assign(&a.dot(&b)));
    out
}

/// `a^T x b` (both `n x _`), summed over row blocks in a fixed order.
fn par_tdot(a: ArrayView2<'_, f32>, b: ArrayView2<'_, f32>) -> Array2<f32> {
    let xs: Vec<_> = a.axis_chunks_iter(Axis(0), ROWS).collect();
    let ys: Vec<_> = b.axis_chunks_iter(Axis(0), ROWS).collect();
    let parts: Vec<Array2<f32>> = xs
        .into_par_iter()
        .zip(ys.into_par_iter())
        .map(|(a, b)| a.t().dot(&b))
        .collect();
    let mut out = Array2::<f32>::zeros((a.ncols(), b.ncols()));
    for p in parts {
        out += &p;
    }
    out
}

/// Fits a PCA of `x` (`n x d`) keeping `k` components (clamped to `min(n, d)`).
pub fn fit(x: ArrayView2<'_, f32>, k: usize, seed: u64) -> Pca {
    let (n, d) = x.dim();
    let mean = if n > 0 {
        x.mean_axis(Axis(0)).unwrap_or_else(|| Array1::zeros(d))
    } else {
        Array1::zeros(d)
    };
    let centered = &x - &mean.view().insert_axis(Axis(0));
    let total_variance = if n > 1 {
        centered
            .iter()
            .map(|&v| (v as f64) * (v as f64))
            .sum::<f64>()
            / (n - 1) as f64
    } else {
        0.0
    };
    let k = k.min(n).min(d);
    if k == 0 {
        return Pca {
            mean,
            components: Array2::zeros((0, d)),
            explained_variance: Vec::new(),
            total_variance,
        };
    }
    // Subspace of k + oversampling columns, refined by power steps.
    let l = (k + 10).min(d).min(n.max(1));
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5ca1_ab1e);
    let mut q = Array2::<f32>::from_shape_fn((d, l), |_| gaussian(&mut rng) as f32);
    orthonormalize(&mut q);
    let power_steps = if l == d { 1 } else { 7 };
    for _ in 0..power_steps {
        let xq = par_dot(centered.view(), q.view()); // n x l
        q = par_tdot(centered.view(), xq.view()); // d x l
        orthonormalize(&mut q);
    }
    // Rayleigh-Ritz: B = (XQ)^T (XQ) / (n - 1), l x l.
    let xq = par_dot(centered.view(), q.view());
    let b = par_tdot(xq.view(), xq.view());
    let denom = (n.max(2) - 1) as f64;
    let mut small: Vec<f64> = b.iter().map(|&v| v as f64 / denom).collect();
    let (values, vectors) = jacobi_eigen(&mut small, l);
    let mut order: Vec<usize> = (0..l).collect();
    order.sort_by(|&a, &b| values[b].total_cmp(&values[a]).then(a.cmp(&b)));
    let mut components = Array2::<f32>::zeros((k, d));
    let mut explained_variance = Vec::with_capacity(k);
    for (c, &o) in order.iter().take(k).enumerate() {
        // component = Q v_o
        let v: Array1<f32> = (0..l).map(|r| vectors[r * l + o] as f32).collect();
        let mut comp = q.dot(&v);
        // Sign convention: the largest-magnitude entry is positive.
        let big = comp
            .iter()
            .copied()
            .fold(0f32, |m, x| if x.abs() > m.abs() { x } else { m });
        if big < 0.0 {
            comp.mapv_inplace(|x| -x);
        }
        components.slice_mut(s![c, ..]).assign(&comp);
        explained_variance.push(values[o].max(0.0));
    }
    Pca {
        mean,
        components,
        explained_variance,
        total_variance,
    }
}

/// Modified Gram-Schmidt on the columns of `q` (twice, for stability), in f64. A column that
/// vanishes is replaced by a unit vector orthogonal to the others.
fn orthonormalize(q: &mut Array2<f32>) {
    let (d, l) = q.dim();
    let mut cols: Vec<Vec<f64>> = (0..l)
        .map(|c| q.column(c).iter().map(|&v| v as f64).collect())
        .collect();
    for _pass in 0..2 {
        for c in 0..l {
            let (done, rest) = cols.split_at_mut(c);
            let col = &mut rest[0];
            for prev in done.iter() {
                let dot: f64 = prev.iter().zip(col.iter()).map(|(a, b)| a * b).sum();
                for (x, p) in col.iter_mut().zip(prev) {
                    *x -= dot * p;
                }
            }
            let norm = col.iter().map(|v| v * v).sum::<f64>().sqrt();
            if norm > 1e-12 {
                col.iter_mut().for_each(|v| *v /= norm);
            } else {
                // A unit vector along an axis, orthogonalised on the next pass.
                col.iter_mut().for_each(|v| *v = 0.0);
                col[c % d] = 1.0;
            }
        }
    }
    for (c, col) in cols.iter().enumerate() {
        for (r, &v) in col.iter().enumerate() {
            q[[r, c]] = v as f32;
        }
    }
}

/// Eigen-decomposition of a symmetric `m x m` matrix (row-major, destroyed) by cyclic Jacobi
/// rotations. Returns the eigenvalues and the eigenvectors as the columns of an `m x m`
/// row-major matrix.
pub(crate) fn jacobi_eigen(a: &mut [f64], m: usize) -> (Vec<f64>, Vec<f64>) {
    let mut v = vec![0f64; m * m];
    for i in 0..m {
        v[i * m + i] = 1.0;
    }
    for _sweep in 0..100 {
        let off: f64 = (0..m)
            .flat_map(|i| (0..m).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * m + j] * a[i * m + j])
            .sum();
        let diag: f64 = (0..m).map(|i| a[i * m + i] * a[i * m + i]).sum();
        if off <= 1e-24 * diag.max(1e-300) {
            break;
        }
        for p in 0..m {
            for q in p + 1..m {
                let apq = a[p * m + q];
                if apq.abs() < 1e-300 {
                    continue;
                }
                let app = a[p * m + p];
                let aqq = a[q * m + q];
                let theta = (aqq - app) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let sn = t * c;
                for r in 0..m {
                    let arp = a[r * m + p];
                    let arq = a[r * m + q];
                    a[r * m + p] = c * arp - sn * arq;
                    a[r * m + q] = sn * arp + c * arq;
                }
                for r in 0..m {
                    let apr = a[p * m + r];
                    let aqr = a[q * m + r];
                    a[p * m + r] = c * apr - sn * aqr;
                    a[q * m + r] = sn * apr + c * aqr;
                }
                for r in 0..m {
                    let vrp = v[r * m + p];
                    let vrq = v[r * m + q];
                    v[r * m + p] = c * vrp - sn * vrq;
                    v[r * m + q] = sn * vrp + c * vrq;
                }
            }
        }
    }
    ((0..m).map(|i| a[i * m + i]).collect(), v)
}

/// A standard normal draw (Box-Muller).
pub(crate) fn gaussian(rng: &mut ChaCha8Rng) -> f64 {
    use rand::Rng;
    let u1: f64 = rng.random::<f64>().max(1e-300);
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}
