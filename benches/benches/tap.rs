//! What the Tap costs: one LeNet training iteration (batch 64 of real MNIST: data layer,
//! forward, loss, backward, SGD step) with the tap off, timing only, and at full detail
//! (timing plus `data`/`diff` statistics of every blob and value/gradient statistics of every
//! parameter). Targets: timing at most 1.08x plain, full at most 1.15x.
//!
//! Also: ResNet-20 on a CIFAR-10 batch of 64 (plain and full), AlexNet forward on one 224x224
//! image.
//!
//! Run: `cargo bench -p benches --bench tap`.

benches::use_mimalloc!();

use std::hint::black_box;
use std::time::Duration;

use burn::prelude::*;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use model_core::bundled::{self, MnistSplit};
use model_core::models::{AlexNet, Classifier, LeNet, ResNet20};
use model_core::tap::{Tap, TapDetail};
use model_core::train::{OptimizerChoice, TrainConfig, Trainer, Unobserved};
use model_core::{Batcher, Dataset, HostBatch, LoadOptions, Normalization};

fn options() -> LoadOptions {
    LoadOptions::default().with_cache(bundled::workspace_cache())
}

/// Trains through `batches` (cycling) with the tap at `detail`, one iteration per criterion
/// iteration.
fn bench_training<M: Classifier>(
    c: &mut Criterion,
    group: &str,
    make: impl Fn(&Device) -> M,
    normalization: Normalization,
    batches: &[HostBatch],
    details: &[TapDetail],
) {
    let mut g = c.benchmark_group(group);
    for &detail in details {
        let device = Device::flex().autodiff();
        device.seed(1);
        let config = TrainConfig::new(OptimizerChoice::sgd(0.9), 0.01, normalization.clone())
            .with_tap(detail);
        let mut trainer = Trainer::new(make(&device), config, &device);
        let mut next = 0usize;
        let name = match detail {
            TapDetail::Off => "plain",
            TapDetail::Timing => "tap_timing",
            TapDetail::Full => "tap_full",
        };
        g.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                let batch = &batches[next % batches.len()];
                next += 1;
                let (outcome, _) = trainer
                    .step(batch, 0.0, 0, &mut Unobserved)
                    .expect("a finite iteration");
                black_box(outcome.loss)
            })
        });
    }
    g.finish();
}

fn host_batches(dataset: &Dataset, batcher: &Batcher, count: usize) -> Vec<HostBatch> {
    batcher
        .plan(dataset.len(), 0)
        .iter()
        .take(count)
        .map(|items| batcher.assemble(dataset, items).expect("reads"))
        .collect()
}

fn lenet_iteration(c: &mut Criterion) {
    let train = bundled::mnist(MnistSplit::Train, &options()).expect("bundled MNIST");
    let batcher = Batcher::new(64, 42, Normalization::mnist()).drop_last(true);
    let batches = host_batches(&train, &batcher, 64);
    bench_training(
        c,
        "lenet_train_iteration_batch64",
        LeNet::mnist,
        Normalization::mnist(),
        &batches,
        &[TapDetail::Off, TapDetail::Timing, TapDetail::Full],
    );
}

fn resnet20_iteration(c: &mut Criterion) {
    let test = bundled::cifar10_test(&options()).expect("bundled CIFAR-10");
    let batcher = Batcher::new(64, 42, bundled::resnet20_normalization()).drop_last(true);
    let batches = host_batches(&test, &batcher, 8);
    bench_training(
        c,
        "resnet20_train_iteration_batch64",
        ResNet20::cifar10,
        bundled::resnet20_normalization(),
        &batches,
        &[TapDetail::Off, TapDetail::Full],
    );
}

fn alexnet_forward(c: &mut Criterion) {
    let device = Device::flex();
    device.seed(3);
    let model = AlexNet::new(1000, &device);
    let image = Tensor::<4>::random(
        [1, 3, 224, 224],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        &device,
    );
    let mut g = c.benchmark_group("alexnet_forward_224");
    g.bench_function("plain", |b| {
        b.iter(|| black_box(model.forward(image.clone()).into_data()))
    });
    g.bench_function("tap_timing", |b| {
        b.iter(|| {
            let mut tap = Tap::new(TapDetail::Timing);
            let out = model.forward_tapped(image.clone(), &mut tap).into_data();
            black_box((out, tap.forward_trace(&model)))
        })
    });
    g.finish();
}

criterion_group! {
    name = tap;
    // No plots: plotters here draws text through ab_glyph with a font found at run time, and
    // criterion's own charts ask for a system font it cannot find (FontUnavailable).
    config = Criterion::default().without_plots()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(8));
    targets = lenet_iteration, resnet20_iteration, alexnet_forward
}
criterion_main!(tap);
