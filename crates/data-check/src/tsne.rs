//! Barnes-Hut t-SNE (van der Maaten 2014), written for speed on a few cores.
//!
//! Exists because the map is the heart of the data check and the reference implementation
//! (linfa-tsne) takes minutes on 10,000 points. This one follows the openTSNE recipe:
//!
//! - input similarities from the exact `3 x perplexity` nearest neighbours (computed in
//!   parallel), a binary search for each point's Gaussian bandwidth, symmetrised into a sparse
//!   `P` that sums to 1;
//! - a seeded initialisation (the first two principal components scaled to a standard deviation
//!   of 1e-4, or a small Gaussian);
//! - gradient descent with gains and momentum (0.5 during early exaggeration, 0.8 after), early
//!   exaggeration 12 for 250 iterations, learning rate `max(n / 12, 200)`, each point's step
//!   clipped to a norm of 5;
//! - attractive forces over the sparse `P` and repulsive forces from a quadtree (theta 0.5),
//!   both computed point by point in parallel with rayon. The quadtree is rebuilt every
//!   iteration from the points sorted in Z (Morton) order: each cell covers a contiguous run of
//!   them, leaves hold up to 8 points whose forces are summed exactly, and points are processed
//!   in that order so that neighbouring points walk the same cells (cache locality).
//!
//! Every per-point force is computed independently and every sum over points runs in a fixed
//! order, so the embedding is the same for a seed whatever the number of threads.

use std::time::Instant;

use ndarray::{Array2, ArrayView2};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::error::{DataCheckError, Result, invalid};
use crate::knn::{Neighbors, knn};
use crate::pca;

/// The fewest points a map is made of.
pub const MIN_POINTS: usize = 5;

/// How the map starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Init {
    /// The first two principal components of the input, scaled to a standard deviation of 1e-4
    /// (openTSNE's default: keeps the global layout, deterministic).
    #[default]
    Pca,
    /// A seeded Gaussian of standard deviation 1e-4.
    Random,
}

/// t-SNE parameters. [`TsneParams::default`] is openTSNE's recipe.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TsneParams {
    /// Effective number of neighbours (default 30); lowered to `(n - 1) / 3` for small inputs.
    pub perplexity: f64,
    /// Factor on the attractive forces during the first phase (default 12).
    pub early_exaggeration: f64,
    /// Iterations of the early-exaggeration phase (default 250).
    pub early_iterations: usize,
    /// Iterations after it (default 750).
    pub iterations: usize,
    /// Step size; `None` for `max(n / 12, 200)` (default).
    pub learning_rate: Option<f64>,
    /// Barnes-Hut accuracy: a quadtree cell of side `s` at distance `d` is summarised when
    /// `s / d < theta` (default 0.5; 0 computes every pair exactly).
    pub theta: f64,
    /// Momentum during early exaggeration (default 0.5).
    pub initial_momentum: f64,
    /// Momentum after it (default 0.8).
    pub final_momentum: f64,
    /// Largest step of one point in one iteration (default 5; `None` for no limit).
    pub max_step_norm: Option<f64>,
    pub init: Init,
    pub seed: u64,
}

impl Default for TsneParams {
    fn default() -> Self {
        TsneParams {
            perplexity: 30.0,
            early_exaggeration: 12.0,
            early_iterations: 250,
            iterations: 750,
            learning_rate: None,
            theta: 0.5,
            initial_momentum: 0.5,
            final_momentum: 0.8,
            max_step_norm: Some(5.0),
            init: Init::Pca,
            seed: 0,
        }
    }
}

impl TsneParams {
    /// Checks every parameter's range.
    pub fn validate(&self) -> Result<()> {
        let pos = |name, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(invalid(name, v, "a finite number above 0"))
            }
        };
        pos("perplexity", self.perplexity)?;
        pos("early_exaggeration", self.early_exaggeration)?;
        if let Some(lr) = self.learning_rate {
            pos("learning_rate", lr)?;
        }
        if let Some(m) = self.max_step_norm {
            pos("max_step_norm", m)?;
        }
        if !(self.theta.is_finite() && self.theta >= 0.0) {
            return Err(invalid("theta", self.theta, "a finite number, 0 or above"));
        }
        for (name, m) in [
            ("initial_momentum", self.initial_momentum),
            ("final_momentum", self.final_momentum),
        ] {
            if !(m.is_finite() && (0.0..1.0).contains(&m)) {
                return Err(invalid(name, m, "a number in [0, 1)"));
            }
        }
        if self.early_iterations + self.iterations == 0 {
            return Err(invalid("iterations", 0, "at least one iteration in all"));
        }
        Ok(())
    }

    /// The perplexity used for `n` points.
    pub fn effective_perplexity(&self, n: usize) -> f64 {
        self.perplexity
            .min(n.saturating_sub(1) as f64 / 3.0)
            .max(1.0)
    }

    /// Neighbours per point in the input similarities for `n` points.
    pub fn neighbours(&self, n: usize) -> usize {
        ((3.0 * self.effective_perplexity(n)).floor() as usize).clamp(1, n.saturating_sub(1).max(1))
    }

    /// The learning rate used for `n` points.
    pub fn effective_learning_rate(&self, n: usize) -> f64 {
        self.learning_rate
            .unwrap_or_else(|| (n as f64 / 12.0).max(200.0))
    }
}

/// A finished map.
#[derive(Debug, Clone, PartialEq)]
pub struct Tsne {
    /// `n x 2` coordinates.
    pub embedding: Array2<f32>,
    /// KL divergence of the final map (Barnes-Hut estimate).
    pub kl_divergence: f64,
    pub perplexity: f64,
    pub neighbours: usize,
    pub learning_rate: f64,
    /// Seconds for the neighbours and similarities.
    pub affinity_seconds: f64,
    /// Seconds for the whole map.
    pub seconds: f64,
}

/// A sparse symmetric matrix in compressed rows.
#[derive(Debug, Clone)]
pub(crate) struct Csr {
    pub indptr: Vec<usize>,
    pub cols: Vec<u32>,
    pub vals: Vec<f64>,
}

/// Maps the rows of `x` to 2-D. `progress` is called after each iteration with the number done.
pub fn tsne(
    x: ArrayView2<'_, f32>,
    params: &TsneParams,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<Tsne> {
    params.validate()?;
    let n = x.nrows();
    if n == 0 {
        return Err(DataCheckError::Empty);
    }
    if n < MIN_POINTS {
        return Err(DataCheckError::TooFew {
            points: n,
            min: MIN_POINTS,
        });
    }
    crate::check_finite(x)?;
    let start = Instant::now();
    let nb = knn(x, params.neighbours(n));
    tsne_with_neighbors(x, &nb, params, progress, start)
}

/// [`tsne`] with the neighbours of `x` already found (at least `params.neighbours(n)` of them;
/// more are ignored), `start` being when the work began.
pub(crate) fn tsne_with_neighbors(
    x: ArrayView2<'_, f32>,
    nb: &Neighbors,
    params: &TsneParams,
    progress: &(dyn Fn(usize) + Sync),
    start: Instant,
) -> Result<Tsne> {
    let n = x.nrows();
    let perplexity = params.effective_perplexity(n);
    let k = params.neighbours(n).min(nb.k);
    let p = affinities(&nb.truncate(k), perplexity);
    let affinity_seconds = start.elapsed().as_secs_f64();

    let mut y = initial(x, params);
    let lr = params.effective_learning_rate(n);
    let total = params.early_iterations + params.iterations;
    let mut update = vec![0f64; 2 * n];
    let mut gains = vec![1f64; 2 * n];
    let mut grad = vec![0f64; 2 * n];
    for it in 0..total {
        let early = it < params.early_iterations;
        let (exaggeration, momentum) = if early {
            (params.early_exaggeration, params.initial_momentum)
        } else {
            (1.0, params.final_momentum)
        };
        gradient(&y, &p, params.theta, exaggeration, &mut grad);
        for t in 0..2 * n {
            let g = grad[t];
            if sign(update[t]) != sign(g) {
                gains[t] += 0.2;
            } else {
                gains[t] *= 0.8;
            }
            gains[t] = gains[t].max(0.01);
            update[t] = momentum * update[t] - lr * gains[t] * g;
        }
        if let Some(max) = params.max_step_norm {
            for step in update.chunks_exact_mut(2) {
                let norm = (step[0] * step[0] + step[1] * step[1]).sqrt();
                if norm > max {
                    step[0] *= max / norm;
                    step[1] *= max / norm;
                }
            }
        }
        for (v, u) in y.iter_mut().zip(&update) {
            *v += u;
        }
        center(&mut y);
        progress(it + 1);
    }
    if y.iter().any(|v| !v.is_finite()) {
        return Err(DataCheckError::Diverged);
    }
    let kl_divergence = kl(&y, &p, params.theta);
    let embedding = Array2::from_shape_fn((n, 2), |(i, c)| y[2 * i + c] as f32);
    Ok(Tsne {
        embedding,
        kl_divergence,
        perplexity,
        neighbours: k,
        learning_rate: lr,
        affinity_seconds,
        seconds: start.elapsed().as_secs_f64(),
    })
}

fn sign(v: f64) -> i8 {
    if v > 0.0 {
        1
    } else if v < 0.0 {
        -1
    } else {
        0
    }
}

fn center(y: &mut [f64]) {
    let n = (y.len() / 2).max(1) as f64;
    let (mut mx, mut my) = (0.0, 0.0);
    for p in y.chunks_exact(2) {
        mx += p[0];
        my += p[1];
    }
    mx /= n;
    my /= n;
    for p in y.chunks_exact_mut(2) {
        p[0] -= mx;
        p[1] -= my;
    }
}

/// The starting map, flattened `[x0, y0, x1, y1, ...]`.
fn initial(x: ArrayView2<'_, f32>, params: &TsneParams) -> Vec<f64> {
    let n = x.nrows();
    let mut y = vec![0f64; 2 * n];
    let mut filled = false;
    if params.init == Init::Pca && x.ncols() >= 2 {
        let fit = pca::fit(x, 2, params.seed);
        if fit.components.nrows() == 2 {
            let proj = fit.transform(x);
            for i in 0..n {
                y[2 * i] = proj[[i, 0]] as f64;
                y[2 * i + 1] = proj[[i, 1]] as f64;
            }
            let std = (y.chunks_exact(2).map(|p| p[0] * p[0]).sum::<f64>() / n as f64).sqrt();
            if std > 0.0 && std.is_finite() {
                y.iter_mut().for_each(|v| *v *= 1e-4 / std);
                filled = true;
            }
        }
    }
    if !filled {
        let mut rng = ChaCha8Rng::seed_from_u64(params.seed);
        y.iter_mut()
            .for_each(|v| *v = 1e-4 * pca::gaussian(&mut rng));
    }
    center(&mut y);
    y
}

/// The symmetrised input similarities `P` (sum 1) from each point's neighbours.
pub(crate) fn affinities(nb: &Neighbors, perplexity: f64) -> Csr {
    let n = nb.len();
    let k = nb.k;
    let mut cond = vec![0f64; n * k];
    cond.par_chunks_mut(k.max(1))
        .enumerate()
        .for_each(|(i, row)| bandwidth_search(nb.sq_distances_of(i), perplexity, row));
    // Row i holds its own k neighbours and every point that has i as a neighbour.
    let mut counts = vec![k; n];
    for &j in &nb.indices {
        counts[j as usize] += 1;
    }
    let mut indptr = vec![0usize; n + 1];
    for i in 0..n {
        indptr[i + 1] = indptr[i] + counts[i];
    }
    let mut fill = indptr[..n].to_vec();
    let mut entries = vec![(0u32, 0f64); indptr[n]];
    for i in 0..n {
        for (t, &j) in nb.of(i).iter().enumerate() {
            let v = cond[i * k + t];
            entries[fill[i]] = (j, v);
            fill[i] += 1;
            let j = j as usize;
            entries[fill[j]] = (i as u32, v);
            fill[j] += 1;
        }
    }
    // Sort each row by column and merge the two halves of each symmetric pair.
    let mut rows: Vec<&mut [(u32, f64)]> = Vec::with_capacity(n);
    let mut rest = entries.as_mut_slice();
    for i in 0..n {
        let (row, tail) = rest.split_at_mut(indptr[i + 1] - indptr[i]);
        rows.push(row);
        rest = tail;
    }
    let merged: Vec<Vec<(u32, f64)>> = rows
        .into_par_iter()
        .map(|row| {
            row.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
            let mut out: Vec<(u32, f64)> = Vec::with_capacity(row.len());
            for &(j, v) in row.iter() {
                match out.last_mut() {
                    Some(last) if last.0 == j => last.1 += v,
                    _ => out.push((j, v)),
                }
            }
            out
        })
        .collect();
    let total: f64 = merged.iter().flat_map(|r| r.iter().map(|e| e.1)).sum();
    let scale = if total > 0.0 { 1.0 / total } else { 0.0 };
    let mut indptr = Vec::with_capacity(n + 1);
    indptr.push(0);
    let nnz: usize = merged.iter().map(Vec::len).sum();
    let mut cols = Vec::with_capacity(nnz);
    let mut vals = Vec::with_capacity(nnz);
    for row in merged {
        for (j, v) in row {
            cols.push(j);
            vals.push(v * scale);
        }
        indptr.push(cols.len());
    }
    Csr { indptr, cols, vals }
}

/// Conditional probabilities `p_j|i` over one point's neighbours (squared distances `d`,
/// ascending) whose entropy is `ln(perplexity)`, by bisection on the precision.
fn bandwidth_search(d: &[f32], perplexity: f64, out: &mut [f64]) {
    let target = perplexity.ln();
    let dmin = d.first().copied().unwrap_or(0.0) as f64;
    let (mut beta, mut lo, mut hi) = (1.0f64, 0.0f64, f64::INFINITY);
    for _ in 0..200 {
        let mut sum = 0.0;
        let mut wsum = 0.0;
        for (o, &dj) in out.iter_mut().zip(d) {
            let delta = dj as f64 - dmin;
            let e = (-beta * delta).exp();
            *o = e;
            sum += e;
            wsum += e * delta;
        }
        let entropy = sum.ln() + beta * wsum / sum;
        let diff = entropy - target;
        if diff.abs() < 1e-5 {
            break;
        }
        if diff > 0.0 {
            lo = beta;
            beta = if hi.is_infinite() {
                beta * 2.0
            } else {
                (beta + hi) / 2.0
            };
        } else {
            hi = beta;
            beta = (beta + lo) / 2.0;
        }
    }
    let sum: f64 = out.iter().sum();
    if sum > 0.0 && sum.is_finite() {
        out.iter_mut().for_each(|o| *o /= sum);
    } else {
        let u = 1.0 / out.len().max(1) as f64;
        out.iter_mut().for_each(|o| *o = u);
    }
}

/// A quadtree cell: centre of mass, mass, the squared distance beyond which it may be
/// summarised (`side^2 / theta^2`), its first child (0 for a leaf; the 4 children are
/// contiguous), and for a leaf the range of its points in Z order.
#[derive(Debug, Clone, Copy, Default)]
struct Node {
    cx: f32,
    cy: f32,
    mass: f32,
    reach2: f32,
    child: u32,
    start: u32,
    len: u32,
}

/// Points a leaf holds at most (unless they share a cell of the finest level).
const BUCKET: usize = 8;
/// Bits of the Morton code per axis: the tree's depth limit.
const LEVELS: u32 = 16;

/// A quadtree over the points sorted in Z order: each node covers a contiguous run of them.
struct QuadTree {
    nodes: Vec<Node>,
    /// Point index, x and y of each point in Z order.
    ids: Vec<u32>,
    xs: Vec<f64>,
    ys: Vec<f64>,
}

impl QuadTree {
    fn build(y: &[f64], theta: f64) -> QuadTree {
        let (mut minx, mut maxx, mut miny, mut maxy) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for p in y.chunks_exact(2) {
            minx = minx.min(p[0]);
            maxx = maxx.max(p[0]);
            miny = miny.min(p[1]);
            maxy = maxy.max(p[1]);
        }
        // A square box, so that cells are squares.
        let side = (maxx - minx).max(maxy - miny).max(1e-12) * (1.0 + 1e-9);
        let scale = ((1u64 << LEVELS) - 1) as f64 / side;
        let spread = |v: u64| -> u64 {
            let mut v = v & 0xffff;
            v = (v | (v << 8)) & 0x00ff_00ff;
            v = (v | (v << 4)) & 0x0f0f_0f0f;
            v = (v | (v << 2)) & 0x3333_3333;
            (v | (v << 1)) & 0x5555_5555
        };
        let mut keyed: Vec<(u64, u32)> = y
            .chunks_exact(2)
            .enumerate()
            .map(|(i, p)| {
                let qx = ((p[0] - minx) * scale).clamp(0.0, 65535.0) as u64;
                let qy = ((p[1] - miny) * scale).clamp(0.0, 65535.0) as u64;
                ((spread(qx) | (spread(qy) << 1)) << 32 | i as u64, i as u32)
            })
            .collect();
        keyed.par_sort_unstable_by_key(|k| k.0);
        let ids: Vec<u32> = keyed.iter().map(|k| k.1).collect();
        let codes: Vec<u32> = keyed.iter().map(|k| (k.0 >> 32) as u32).collect();
        let xs: Vec<f64> = ids.iter().map(|&i| y[2 * i as usize]).collect();
        let ys: Vec<f64> = ids.iter().map(|&i| y[2 * i as usize + 1]).collect();
        let inv_theta2 = if theta > 0.0 {
            1.0 / (theta * theta)
        } else {
            f64::INFINITY
        };
        let mut tree = QuadTree {
            nodes: Vec::with_capacity(ids.len() / 2 + 8),
            ids,
            xs,
            ys,
        };
        tree.nodes.push(Node::default());
        let n = tree.ids.len();
        tree.fill(0, 0, n, 0, side, inv_theta2, &codes);
        tree
    }

    /// Fills node `slot` with the points `lo..hi` (sharing the code bits above `level`); returns
    /// its sums (x, y, mass).
    #[allow(clippy::too_many_arguments)]
    fn fill(
        &mut self,
        slot: usize,
        lo: usize,
        hi: usize,
        level: u32,
        side: f64,
        inv_theta2: f64,
        codes: &[u32],
    ) -> (f64, f64, f64) {
        let reach2 = (side * side * inv_theta2).min(f32::MAX as f64) as f32;
        let (mut sx, mut sy, mass);
        if hi - lo <= BUCKET || level >= LEVELS {
            sx = self.xs[lo..hi].iter().sum::<f64>();
            sy = self.ys[lo..hi].iter().sum::<f64>();
            mass = (hi - lo) as f64;
            self.nodes[slot] = Node {
                child: 0,
                start: lo as u32,
                len: (hi - lo) as u32,
                ..Default::default()
            };
        } else {
            let first = self.nodes.len();
            self.nodes.extend(std::iter::repeat_n(Node::default(), 4));
            let shift = 2 * (LEVELS - 1 - level);
            let mut start = lo;
            (sx, sy) = (0.0, 0.0);
            let mut m = 0.0;
            for q in 0..4u32 {
                let end = start + codes[start..hi].partition_point(|&c| (c >> shift) & 3 <= q);
                if end > start {
                    let (a, b, c) = self.fill(
                        first + q as usize,
                        start,
                        end,
                        level + 1,
                        side / 2.0,
                        inv_theta2,
                        codes,
                    );
                    sx += a;
                    sy += b;
                    m += c;
                }
                start = end;
            }
            mass = m;
            self.nodes[slot].child = first as u32;
        }
        let nd = &mut self.nodes[slot];
        if mass > 0.0 {
            nd.cx = (sx / mass) as f32;
            nd.cy = (sy / mass) as f32;
        }
        nd.mass = mass as f32;
        nd.reach2 = reach2;
        (sx, sy, mass)
    }

    /// Repulsive force on point `i` at `(x, y)`, unnormalised: `sum_j q_ij^2 (y_i - y_j)` and
    /// `sum_j q_ij` with `q_ij = 1 / (1 + |y_i - y_j|^2)`, the point itself left out.
    #[inline]
    fn repulsion(&self, i: u32, x: f64, y: f64) -> (f64, f64, f64) {
        let nodes = &self.nodes;
        let mut stack = [0u32; 4 * LEVELS as usize + 8];
        let mut sp = 1usize;
        let (mut fx, mut fy, mut sq) = (0.0, 0.0, 0.0);
        while sp > 0 {
            sp -= 1;
            let nd = &nodes[stack[sp] as usize];
            let dx = x - nd.cx as f64;
            let dy = y - nd.cy as f64;
            let d2 = dx * dx + dy * dy;
            if d2 > nd.reach2 as f64 {
                let q = 1.0 / (1.0 + d2);
                let mq = nd.mass as f64 * q;
                sq += mq;
                let mqq = mq * q;
                fx += mqq * dx;
                fy += mqq * dy;
            } else if nd.child == 0 {
                let (s, e) = (nd.start as usize, (nd.start + nd.len) as usize);
                for t in s..e {
                    if self.ids[t] == i {
                        continue;
                    }
                    let dx = x - self.xs[t];
                    let dy = y - self.ys[t];
                    let q = 1.0 / (1.0 + dx * dx + dy * dy);
                    sq += q;
                    let qq = q * q;
                    fx += qq * dx;
                    fy += qq * dy;
                }
            } else {
                let c = nd.child as usize;
                for t in 0..4 {
                    if nodes[c + t].mass > 0.0 {
                        stack[sp] = (c + t) as u32;
                        sp += 1;
                    }
                }
            }
        }
        (fx, fy, sq)
    }
}

/// Per-point attractive and repulsive terms, in parallel; returns the normaliser `Z`.
fn forces(y: &[f64], p: &Csr, theta: f64, out: &mut [[f64; 5]]) -> f64 {
    let tree = QuadTree::build(y, theta);
    // Points in Z order, so that consecutive points walk the same part of the tree.
    let mut res = vec![[0f64; 5]; tree.ids.len()];
    const CHUNK: usize = 64;
    res.par_chunks_mut(CHUNK)
        .zip(tree.ids.par_chunks(CHUNK))
        .for_each(|(chunk, idx)| {
            for (o, &i) in chunk.iter_mut().zip(idx) {
                let i = i as usize;
                let (xi, yi) = (y[2 * i], y[2 * i + 1]);
                let (rx, ry, sq) = tree.repulsion(i as u32, xi, yi);
                let (mut ax, mut ay) = (0.0, 0.0);
                for e in p.indptr[i]..p.indptr[i + 1] {
                    let j = p.cols[e] as usize;
                    let dx = xi - y[2 * j];
                    let dy = yi - y[2 * j + 1];
                    let w = p.vals[e] / (1.0 + dx * dx + dy * dy);
                    ax += w * dx;
                    ay += w * dy;
                }
                *o = [ax, ay, rx, ry, sq];
            }
        });
    for (&i, r) in tree.ids.iter().zip(&res) {
        out[i as usize] = *r;
    }
    out.iter().map(|o| o[4]).sum()
}

fn gradient(y: &[f64], p: &Csr, theta: f64, exaggeration: f64, grad: &mut [f64]) {
    let n = y.len() / 2;
    let mut f = vec![[0f64; 5]; n];
    let z = forces(y, p, theta, &mut f).max(f64::MIN_POSITIVE);
    for (g, o) in grad.chunks_exact_mut(2).zip(&f) {
        g[0] = exaggeration * o[0] - o[2] / z;
        g[1] = exaggeration * o[1] - o[3] / z;
    }
}

/// KL(P || Q) of the map, with Q's normaliser from the quadtree.
fn kl(y: &[f64], p: &Csr, theta: f64) -> f64 {
    let n = y.len() / 2;
    let mut f = vec![[0f64; 5]; n];
    let z = forces(y, p, theta, &mut f).max(f64::MIN_POSITIVE);
    let mut total = 0.0;
    for i in 0..n {
        for e in p.indptr[i]..p.indptr[i + 1] {
            let j = p.cols[e] as usize;
            let pij = p.vals[e];
            if pij <= 0.0 {
                continue;
            }
            let dx = y[2 * i] - y[2 * j];
            let dy = y[2 * i + 1] - y[2 * j + 1];
            let q = 1.0 / (1.0 + dx * dx + dy * dy) / z;
            total += pij * (pij / q.max(f64::MIN_POSITIVE)).ln();
        }
    }
    total
}
