//! Occlusion throughput, batched against one window at a time (Captum's
//! `perturbations_per_eval=1`): one 28x28 MNIST image through LeNet (window 6, stride 2: 144
//! windows) and one 32x32 CIFAR-10 image through the real pre-trained ResNet-20 (window 8,
//! stride 2: 169 windows). Each iteration is one whole occlusion map, the forward of the
//! unoccluded input included; criterion's throughput is windows per second. `batched` and
//! `unbatched` are the checklist's path on the CPU: the model lowered into an `InferenceNet`,
//! each occluded copy recomputed only where its window reaches (`InferenceForward`);
//! `whole_batched` and `whole_unbatched` run the lowered net over every copy whole;
//! `burn_batched` and `burn_unbatched` run Burn's own forward. `benches/captum/compare.sh` puts
//! Captum's figures beside these.
//!
//! Run: `cargo bench -p benches --bench occlusion`.

benches::use_mimalloc!();

use std::hint::black_box;
use std::time::Duration;

use burn::prelude::*;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use impact::{Forward, Input, Occlusion, estimate_sample_bytes};
use model_core::bundled::{self, MnistSplit};
use model_core::inference::InferenceForward;
use model_core::models::{Classifier, LeNet, build_seeded};
use model_core::{Dataset, LoadOptions, Normalization};

fn first_image(data: &Dataset, normalization: &Normalization) -> Input {
    let mut pixels = vec![0u8; data.shape().len()];
    data.read_sample(0, &mut pixels).expect("a readable sample");
    Input::from_pixels(&pixels, data.shape(), normalization).expect("an image")
}

fn bench_model<M: Classifier>(
    c: &mut Criterion,
    group: &str,
    model: &M,
    input: &Input,
    window: usize,
    normalization: &Normalization,
) {
    let device = Device::flex();
    let net = model.inference_net().expect("the model lowers");
    let bytes = estimate_sample_bytes(model, &device);
    let mut g = c.benchmark_group(group);
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(8));
    let incremental = InferenceForward::new(model, &device);
    assert!(incremental.is_lowered(), "{}", incremental.reason());
    let whole = |x: Tensor<4>| net.forward(x);
    let burn = |x: Tensor<4>| model.forward(x);
    let engines: [(&str, &dyn Forward, Option<usize>); 6] = [
        ("batched", &incremental, None),
        ("unbatched", &incremental, Some(1)),
        ("whole_batched", &whole, None),
        ("whole_unbatched", &whole, Some(1)),
        ("burn_batched", &burn, None),
        ("burn_unbatched", &burn, Some(1)),
    ];
    for (name, forward, cap) in engines {
        let mut builder = Occlusion::builder()
            .window(window)
            .stride(2)
            .normalization(normalization.clone())
            .sample_bytes(bytes);
        if let Some(cap) = cap {
            builder = builder.max_batch(cap);
        }
        let occlusion = builder.build().expect("valid settings");
        let windows = occlusion
            .occlude(forward, input, &device)
            .expect("an occlusion map")
            .stats
            .windows;
        g.throughput(Throughput::Elements(windows as u64));
        g.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                black_box(
                    occlusion
                        .occlude(forward, input, &device)
                        .expect("an occlusion map")
                        .base_probability,
                )
            })
        });
    }
    g.finish();
}

fn occlusion(c: &mut Criterion) {
    let options = LoadOptions::default().with_cache(bundled::workspace_cache());
    let device = Device::flex();

    let mnist = bundled::mnist(MnistSplit::Test, &options).expect("the bundled MNIST");
    let lenet = build_seeded(&device, 1, LeNet::mnist);
    let image = first_image(&mnist, &Normalization::mnist());
    bench_model(
        c,
        "occlusion_lenet_28x28_w6s2",
        &lenet,
        &image,
        6,
        &Normalization::mnist(),
    );

    let cifar = bundled::cifar10_exact(&options).expect("the bundled CIFAR-10 PNGs");
    let resnet = bundled::resnet20_pretrained(&device).expect("the bundled ResNet-20");
    let norm = bundled::resnet20_normalization();
    let image = first_image(&cifar, &norm);
    bench_model(
        c,
        "occlusion_resnet20_32x32_w8s2",
        &resnet,
        &image,
        8,
        &norm,
    );
}

criterion_group! {
    name = benches;
    // No plots: criterion's plotters backend panics (`FontUnavailable`) where it finds no font.
    config = Criterion::default().without_plots();
    targets = occlusion
}
criterion_main!(benches);
