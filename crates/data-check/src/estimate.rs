//! What a map will cost, said before it runs, and what it cost, measured after.
//!
//! Exists because t-SNE users run out of memory without warning (scikit-learn needed about 55 GB
//! for MNIST). The estimate models every large buffer of this crate's pipeline (pixels, features,
//! PCA, neighbours, similarities, the optimiser's state, the pictures) phase by phase and takes
//! the largest phase; the time model uses per-operation costs measured on a 2-core machine.
//! `DataCheck` refuses a request whose estimate exceeds the memory budget with a typed error
//! that names the largest sample that fits.

use serde::Serialize;

use crate::tsne::TsneParams;

/// The predicted cost of a data check.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Estimate {
    pub points: usize,
    pub input_dims: usize,
    pub pca_dims: usize,
    /// Neighbours per point in the t-SNE similarities.
    pub neighbours: usize,
    pub threads: usize,
    /// Peak resident memory predicted for the whole process.
    pub bytes: u64,
    /// Seconds predicted for the whole check.
    pub seconds: f64,
    /// Seconds predicted for the t-SNE optimisation alone.
    pub tsne_seconds: f64,
}

/// Resident memory of a process before the check allocates anything (binary, allocator, threads).
const BASELINE: f64 = 24.0 * 1024.0 * 1024.0;

/// Predicts the cost of mapping `points` samples of `input_dims` values each, reduced to
/// `pca_dims` by PCA, with `params`; `resident_bytes` is what the dataset already holds in memory.
pub fn estimate(
    points: usize,
    input_dims: usize,
    pca_dims: usize,
    params: &TsneParams,
    resident_bytes: u64,
) -> Estimate {
    let threads = rayon::current_num_threads().max(1);
    let n = points as f64;
    let d = input_dims as f64;
    let p = (pca_dims.min(input_dims).min(points.max(1))) as f64;
    let l = (p + 10.0).min(d);
    let k = params.neighbours(points.max(2)) as f64;
    let t = threads as f64;
    // Held through the whole check: pixels (u8), features (f32), PCA output, the dataset.
    let held = BASELINE + resident_bytes as f64 + n * d + n * d * 4.0 + n * p * 4.0;
    // PCA: a centred copy, two n x l products, per-block partial sums, the subspace.
    let pca =
        n * d * 4.0 + 2.0 * n * l * 4.0 + (n / 1024.0).ceil() * d * l * 4.0 + 4.0 * d * l * 4.0;
    // Neighbours: per-thread blocks of distances, then similarities (conditional, entries,
    // merged rows, the final sparse matrix).
    let knn = |k: f64| n * k * 8.0 + t * (128.0 * n * 4.0 + 12.0 * n);
    let affinity = knn(k) + n * k * 8.0 + 2.0 * n * k * 16.0 * 2.0 + 2.0 * n * k * 12.0;
    // Optimisation: positions, steps, gains, gradient, per-point forces, the quadtree.
    let tsne = 2.0 * n * k * 12.0 + 4.0 * 2.0 * n * 8.0 + n * 40.0 + 3.0 * n * 64.0;
    // Measures and pictures: 2-D neighbours, the bitmap, the SVG text.
    let measures = knn(10.0) + 1000.0 * 820.0 * 3.0 * 2.0 + n * 120.0;
    let bytes = held + pca.max(affinity).max(tsne).max(measures);

    // Time: matrix products at ~8 GFLOP/s a thread; a distance-and-select per pair; per point
    // and iteration of t-SNE about 0.14 us per level of the quadtree (log2 n levels, more as
    // theta shrinks), attractive forces included; measured on 2 cores (MNIST 10k: 12-18 s of
    // t-SNE depending on the machine's load). Threads scale at about 85%.
    let t_eff = 1.0 + 0.85 * (t - 1.0);
    let gemm = 8e9 * t_eff;
    let power = 9.0;
    let pca_s = 2.0 * power * n * d * l / gemm;
    let knn_s = |dims: f64| 2.0 * n * n * dims / gemm + n * n * 4e-9 / t_eff;
    let iterations = (params.early_iterations + params.iterations) as f64;
    let theta = params.theta.max(0.05);
    let tsne_s = knn_s(p)
        + iterations * n * (1.4e-7 * n.max(2.0).log2() * (0.5 / theta).powi(2) + k * 2e-9) / t_eff;
    let measures_s = knn_s(2.0) + n * n.min(20_000.0) * 3e-9 / t_eff;
    let seconds = n * d * 2e-9 + pca_s + tsne_s + measures_s + 0.5;
    Estimate {
        points,
        input_dims,
        pca_dims: p as usize,
        neighbours: k as usize,
        threads,
        bytes: bytes as u64,
        seconds,
        tsne_seconds: tsne_s,
    }
}

/// The largest number of points whose estimate fits `budget` bytes (0 when none does).
pub fn max_points(
    budget: u64,
    input_dims: usize,
    pca_dims: usize,
    params: &TsneParams,
    resident_bytes: u64,
) -> usize {
    let fits = |n: usize| estimate(n, input_dims, pca_dims, params, resident_bytes).bytes <= budget;
    if !fits(1) {
        return 0;
    }
    let (mut lo, mut hi) = (1usize, 2usize);
    while fits(hi) && hi < (1 << 40) {
        lo = hi;
        hi *= 2;
    }
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if fits(mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo
}

fn proc_status_kib(file: &str, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(file).ok()?;
    let line = text.lines().find(|l| l.starts_with(key))?;
    line[key.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse::<u64>()
        .ok()
        .map(|kib| kib * 1024)
}

/// Peak resident memory of this process so far (`VmHWM`), where the system reports it.
pub fn peak_rss_bytes() -> Option<u64> {
    proc_status_kib("/proc/self/status", "VmHWM:")
}

/// Memory the system can give without swapping (`MemAvailable`), where it reports it.
pub fn available_memory_bytes() -> Option<u64> {
    proc_status_kib("/proc/meminfo", "MemAvailable:")
}

/// The default memory budget: 80% of the available memory, or 4 GiB where unknown.
pub fn default_budget() -> u64 {
    available_memory_bytes()
        .map(|b| b / 5 * 4)
        .unwrap_or(4 << 30)
}
