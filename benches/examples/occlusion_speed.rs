//! Times our occlusion the way `benches/captum/compare.py` times Captum's `Occlusion`: one
//! 28x28 MNIST image through LeNet (window 6, stride 2: 144 windows) and one 32x32 CIFAR-10
//! image through the real pre-trained ResNet-20 (window 8, stride 2: 169 windows), each call
//! including the forward of the unoccluded input; batched by the memory budget, in batches of
//! 64 (Captum's `perturbations_per_eval=64`) and one window at a time. Prints windows per second
//! (the median of the repeats). `ours` is the path the checklist takes on the CPU: the model
//! lowered into an `InferenceNet`, each occluded copy recomputed only where its window reaches
//! (`InferenceForward`); `whole` runs the lowered net over every copy whole; `burn` is the same
//! maps through Burn's own forward.
//!
//! Run: `cargo run --release -p benches --example occlusion_speed [-- --repeats 5]`

benches::use_mimalloc!();

use std::time::Instant;

use burn::prelude::*;
use impact::{Forward, Input, Occlusion, estimate_sample_bytes};
use model_core::bundled::{self, MnistSplit};
use model_core::inference::InferenceForward;
use model_core::models::{Classifier, LeNet, build_seeded};
use model_core::{Dataset, LoadOptions, Normalization};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn first_image(data: &Dataset, normalization: &Normalization) -> Input {
    let mut pixels = vec![0u8; data.shape().len()];
    data.read_sample(0, &mut pixels).expect("readable");
    Input::from_pixels(&pixels, data.shape(), normalization).expect("an image")
}

/// Times `ours` (incremental), `whole` (the lowered net) then `burn` (Burn's forward) in every
/// mode; returns ours.
fn time<M: Classifier>(
    name: &str,
    model: &M,
    input: &Input,
    window: usize,
    normalization: &Normalization,
    device: &Device,
    repeats: usize,
) -> Vec<(String, f64)> {
    let net = model.inference_net().expect("the model lowers");
    let incremental = InferenceForward::new(model, device);
    assert!(incremental.is_lowered(), "{}", incremental.reason());
    let whole = |x: Tensor<4>| net.forward(x);
    let burn = |x: Tensor<4>| model.forward(x);
    let engines: [(&str, &dyn Forward); 3] =
        [("ours", &incremental), ("whole", &whole), ("burn", &burn)];
    let bytes = estimate_sample_bytes(model, device);
    let modes: [(&str, Option<usize>); 3] = [
        ("batched", None),
        ("batch64", Some(64)),
        ("unbatched", Some(1)),
    ];
    let mut rates = Vec::new();
    for ((engine, forward), (mode, cap)) in engines
        .iter()
        .flat_map(|e| modes.iter().map(move |m| (*e, *m)))
    {
        let mut b = Occlusion::builder()
            .window(window)
            .stride(2)
            .normalization(normalization.clone())
            .sample_bytes(bytes);
        if let Some(cap) = cap {
            b = b.max_batch(cap);
        }
        let occlusion = b.build().expect("valid settings");
        let _ = occlusion.occlude(forward, input, device).expect("warm-up");
        let mut per_second = Vec::new();
        let mut batch = 0;
        let mut windows = 0;
        for _ in 0..repeats {
            let started = Instant::now();
            let maps = occlusion
                .occlude(forward, input, device)
                .expect("occlusion");
            let seconds = started.elapsed().as_secs_f64();
            windows = maps.stats.windows;
            batch = maps.stats.batch_size;
            per_second.push(windows as f64 / seconds);
        }
        let rate = median(per_second.clone());
        println!(
            "{engine} {name} {mode}: windows={windows} batch={batch} windows_per_second={rate:.0} (runs: {})",
            per_second
                .iter()
                .map(|r| format!("{r:.0}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        if engine == "ours" {
            rates.push((mode.to_string(), rate));
        }
    }
    rates
}

fn main() {
    let repeats = std::env::args()
        .skip_while(|a| a != "--repeats")
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(5usize);
    let device = Device::flex();
    let options = LoadOptions::default().with_cache(bundled::workspace_cache());

    let mnist = bundled::mnist(MnistSplit::Test, &options).expect("bundled MNIST");
    let lenet = build_seeded(&device, 1, LeNet::mnist);
    let image = first_image(&mnist, &Normalization::mnist());
    let mnist_norm = Normalization::mnist();
    let lenet_rates = time("lenet", &lenet, &image, 6, &mnist_norm, &device, repeats);

    let cifar = bundled::cifar10_exact(&options).expect("bundled CIFAR-10 PNGs");
    let resnet = bundled::resnet20_pretrained(&device).expect("the bundled ResNet-20");
    let norm = bundled::resnet20_normalization();
    let image = first_image(&cifar, &norm);
    let resnet_rates = time("resnet20", &resnet, &image, 8, &norm, &device, repeats);

    for (name, rates) in [("lenet", lenet_rates), ("resnet20", resnet_rates)] {
        let get = |m: &str| {
            rates
                .iter()
                .find(|(k, _)| k == m)
                .map_or(f64::NAN, |(_, r)| *r)
        };
        println!(
            "ours {name}: batched/unbatched = {:.1}x",
            get("batched") / get("unbatched")
        );
    }
}
