//! data-check's t-SNE pieces on the bundled MNIST: PCA to 50 dimensions, the exact 90 nearest
//! neighbours in PCA space, and a whole (shortened) map of a 2,000-image stratified sample.
//!
//! The full 10,000-image comparison against openTSNE is `benches/tsne/compare.sh`.
//!
//! Run: `cargo bench -p benches --bench tsne`.

benches::use_mimalloc!();

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use data_check::{TsneParams, knn, pca, tsne};
use model_core::bundled::{self, MnistSplit};
use model_core::{LoadOptions, LoadStrategy};
use ndarray::Array2;

fn mnist_sample(n: usize) -> Array2<f32> {
    let options = LoadOptions::new(LoadStrategy::LoadAll).with_cache(bundled::workspace_cache());
    let t10k = bundled::mnist(MnistSplit::Test, &options).expect("bundled MNIST");
    let ds = t10k.stratified_subset(n, 0).expect("sample");
    let dims = ds.shape().len();
    let mut pixels = vec![0u8; n * dims];
    let all: Vec<usize> = (0..n).collect();
    ds.read_samples(&all, &mut pixels).expect("read");
    Array2::from_shape_fn((n, dims), |(i, j)| pixels[i * dims + j] as f32 / 255.0)
}

fn bench(c: &mut Criterion) {
    let x = mnist_sample(2_000);
    let mut group = c.benchmark_group("tsne");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    group.bench_function("pca50_2000x784", |b| {
        b.iter(|| black_box(pca::fit(x.view(), 50, 0)))
    });
    let fit = pca::fit(x.view(), 50, 0);
    let reduced = fit.transform(x.view());
    group.bench_function("knn90_2000x50", |b| {
        b.iter(|| black_box(knn::knn(reduced.view(), 90)))
    });
    let params = TsneParams {
        early_iterations: 100,
        iterations: 150,
        ..TsneParams::default()
    };
    group.bench_function("tsne_2000_250_iterations", |b| {
        b.iter(|| black_box(tsne::tsne(reduced.view(), &params, &|_| {}).expect("map")))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    // No plots: criterion's charts ask for a system font plotters cannot find here (FontUnavailable).
    config = Criterion::default().without_plots();
    targets = bench
}
criterion_main!(benches);
