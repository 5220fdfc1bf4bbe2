//! The data layer's cost per batch: assembling a batch of 64 samples (read, decode, normalise)
//! under each loading strategy, on the bundled real data.
//!
//! The seed's anchor: 278 ms per batch loading on demand against 0.322 ms with everything in
//! memory. `LoadAll` here should assemble a batch of 64 well under 0.322 ms.
//!
//! Run: `cargo bench -p benches --bench data_layer`.

benches::use_mimalloc!();

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use model_core::bundled::{self, MnistSplit};
use model_core::{Batcher, Dataset, LoadOptions, LoadStrategy, Normalization};

const BATCH: usize = 64;

fn options(strategy: LoadStrategy) -> LoadOptions {
    LoadOptions::new(strategy).with_cache(bundled::workspace_cache())
}

/// Assembles and normalises successive batches of a shuffled epoch, one per iteration, so an
/// on-demand source reads different samples every time (as in training).
fn bench_batches(
    c: &mut Criterion,
    group: &str,
    datasets: &[(&str, Dataset)],
    normalization: Normalization,
) {
    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Elements(BATCH as u64));
    for (name, dataset) in datasets {
        let batcher = Batcher::new(BATCH, 42, normalization.clone()).drop_last(true);
        let plan = batcher.plan(dataset.len(), 0);
        let mut next = 0usize;
        g.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                let items = &plan[next % plan.len()];
                next += 1;
                let batch = batcher
                    .assemble(dataset, items)
                    .expect("bundled data reads");
                black_box(batcher.normalize(&batch).expect("normalises"))
            })
        });
    }
    g.finish();
}

fn mnist_strategies(c: &mut Criterion) {
    let strategies = [
        LoadStrategy::LoadAll,
        LoadStrategy::OnDemandNoCache,
        LoadStrategy::OnDemandCached { capacity: 4096 },
    ];
    let datasets: Vec<(&str, Dataset)> = strategies
        .iter()
        .map(|&s| {
            (
                s.name(),
                bundled::mnist(MnistSplit::Train, &options(s)).expect("bundled MNIST opens"),
            )
        })
        .collect();
    bench_batches(c, "mnist_train_batch64", &datasets, Normalization::mnist());
}

fn cifar10_jpeg_folder(c: &mut Criterion) {
    let on_demand = bundled::cifar10_test(&options(LoadStrategy::OnDemandNoCache))
        .expect("bundled CIFAR-10 opens");
    // LoadAll from the same folder: every JPEG decoded once, up front.
    let all = on_demand
        .with_strategy(LoadStrategy::LoadAll)
        .expect("decodes");
    let datasets = vec![("load_all", all), ("on_demand_no_cache", on_demand)];
    bench_batches(
        c,
        "cifar10_jpeg_folder_batch64",
        &datasets,
        Normalization::cifar10(),
    );
}

criterion_group! {
    name = data_layer;
    // No plots: plotters here draws text through ab_glyph with a font found at run time, and
    // criterion's own charts ask for a system font it cannot find (FontUnavailable).
    config = Criterion::default().without_plots()
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = mnist_strategies, cifar10_jpeg_folder
}
criterion_main!(data_layer);
