#![cfg(feature = "wgpu")]
//! Burn's asynchronous wgpu device, checked on a machine without a GPU.
//!
//! CI has no GPU: it installs Mesa's software renderer (lavapipe, Vulkan on the CPU) and runs
//! `cargo test -p model-core --features wgpu --test wgpu_device`, so this file is what shows that
//! the wgpu device works at all there — that it comes up, takes a real batch and hands back what
//! the CPU backend (`Device::flex()`) computes. It fails, never skips, when no wgpu adapter can be
//! created: on CI that means Mesa is missing or broken, which is exactly what it is there to catch.
//!
//! The checks: a batch of the bundled MNIST test split, built through the crate's own
//! [`Batcher`](model_core::Batcher), reads back from wgpu bit for bit as from flex (images and
//! labels); a small network (conv2d with a seeded kernel, relu, a dense layer, cross-entropy
//! against the batch's labels) gives the same loss, and on `.autodiff()` devices the same
//! gradients, on both, within 1e-4 of the largest magnitude; and `Device::sync()` returns `Ok`.

use std::sync::OnceLock;

use burn::prelude::*;
use burn::tensor::activation::{log_softmax, relu};
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use model_core::bundled::{self, MnistSplit};
use model_core::{Batcher, HostBatch, LoadOptions, LoadStrategy, Normalization};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const BATCH: usize = 64;
const CONV_OUT: usize = 4;
const KERNEL: usize = 3;
const CLASSES: usize = 10;
const TOLERANCE: f32 = 1e-4;

/// The wgpu device, created once per process (a wgpu runtime is initialised once), with a line
/// naming the adapter and graphics API it landed on.
fn wgpu_device() -> &'static (Device, String) {
    static DEVICE: OnceLock<(Device, String)> = OnceLock::new();
    DEVICE.get_or_init(|| match Device::wgpu_options().init_with_setup() {
        Ok((device, setup)) => {
            let info = setup.adapter.get_info();
            let line = format!(
                "wgpu adapter {:?} ({:?}, {:?} backend, driver {:?} {:?})",
                info.name, info.device_type, setup.backend, info.driver, info.driver_info
            );
            eprintln!("{line}");
            (device, line)
        }
        Err(err) => panic!(
            "could not create Burn's wgpu device: {err}\n\
                 This test needs a wgpu adapter. Without a GPU, install Mesa's software Vulkan \
                 driver (Debian: `apt-get install mesa-vulkan-drivers libvulkan1`; OpenGL through \
                 `libegl1 libgl1-mesa-dri` works too) — see .ci/run."
        ),
    })
}

/// One batch of 64 images from the bundled MNIST test split, on the host.
fn host_batch() -> (Batcher, HostBatch) {
    let options = LoadOptions::new(LoadStrategy::LoadAll).with_cache(bundled::workspace_cache());
    let test =
        bundled::mnist(MnistSplit::Test, &options).expect("the bundled MNIST test split opens");
    assert_eq!(test.len(), 10_000);
    let batcher = Batcher::new(BATCH, 7, Normalization::mnist());
    let plan = batcher.plan(test.len(), 0);
    let host = batcher
        .assemble(&test, &plan[0])
        .expect("the first batch assembles");
    assert_eq!(host.dims, [BATCH, 1, 28, 28]);
    (batcher, host)
}

fn seeded(len: usize, scale: f32, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..len).map(|_| rng.random_range(-scale..scale)).collect()
}

/// `|a - b| <= TOLERANCE * max|b|` element by element: relative to the reference's scale, so that
/// values near zero (where summation order dominates) do not make the check flaky.
fn assert_close(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    assert!(
        scale > 0.0 && scale.is_finite(),
        "{what}: reference is all zero or not finite"
    );
    let (worst, at) = got
        .iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs())
        .enumerate()
        .fold(
            (0f32, 0),
            |(m, i), (j, d)| if d > m || d.is_nan() { (d, j) } else { (m, i) },
        );
    assert!(
        worst <= TOLERANCE * scale,
        "{what}: wgpu {} vs flex {} at {at}, difference {worst:e} exceeds {TOLERANCE:e} x max|flex| {scale:e}",
        got[at],
        want[at]
    );
}

/// The loss of a small network on `batch`, and the gradients of its two weights, on `device`
/// (an autodiff device).
struct Run {
    logits: Vec<f32>,
    loss: f32,
    conv_grad: Vec<f32>,
    dense_grad: Vec<f32>,
}

fn run(batcher: &Batcher, host: &HostBatch, device: &Device) -> Run {
    assert!(device.is_autodiff());
    let batch = batcher
        .to_tensors(host, device)
        .expect("the batch converts to tensors");

    let conv_w = Tensor::<4>::from_data(
        TensorData::new(
            seeded(CONV_OUT * KERNEL * KERNEL, 0.5, 11),
            [CONV_OUT, 1, KERNEL, KERNEL],
        ),
        device,
    )
    .require_grad();
    let conv_b = Tensor::<1>::from_data(
        TensorData::new(seeded(CONV_OUT, 0.1, 12), [CONV_OUT]),
        device,
    );
    let features = CONV_OUT * 14 * 14;
    let dense_w = Tensor::<2>::from_data(
        TensorData::new(seeded(features * CLASSES, 0.05, 13), [features, CLASSES]),
        device,
    )
    .require_grad();

    // 28x28 -> stride 2, padding 1 -> 14x14.
    let x = conv2d(
        batch.images,
        conv_w.clone(),
        Some(conv_b),
        ConvOptions::new([2, 2], [1, 1], [1, 1], 1),
    );
    assert_eq!(x.dims(), [BATCH, CONV_OUT, 14, 14]);
    let x = relu(x).reshape([BATCH, features]);
    let logits = x.matmul(dense_w.clone());
    let picked = log_softmax(logits.clone(), 1).gather(1, batch.labels.reshape([BATCH, 1]));
    let loss = picked.mean().neg();

    let grads = loss.backward();
    let conv_grad = conv_w.grad(&grads).expect("the conv kernel has a gradient");
    let dense_grad = dense_w
        .grad(&grads)
        .expect("the dense weight has a gradient");
    assert_eq!(conv_grad.dims(), [CONV_OUT, 1, KERNEL, KERNEL]);
    assert_eq!(dense_grad.dims(), [features, CLASSES]);

    let read = |name: &str, t: Tensor<2>| -> Vec<f32> {
        t.try_into_vec_as::<f32>()
            .unwrap_or_else(|e| panic!("reading {name} back: {e}"))
    };
    Run {
        logits: read("logits", logits.detach()),
        loss: loss
            .try_into_vec_as::<f32>()
            .expect("reading the loss back")[0],
        conv_grad: read(
            "conv gradient",
            conv_grad.reshape([CONV_OUT, KERNEL * KERNEL]),
        ),
        dense_grad: read("dense gradient", dense_grad),
    }
}

#[test]
fn wgpu_device_comes_up_and_syncs() {
    let (device, adapter) = wgpu_device();
    // Queue some work, then wait for it: the device is asynchronous, so `sync` is where an
    // execution error would surface.
    let t = Tensor::<2>::ones([256, 256], device).matmul(Tensor::<2>::ones([256, 256], device));
    device
        .sync()
        .unwrap_or_else(|e| panic!("sync on {adapter}: {e}"));
    let sum = t
        .sum()
        .try_into_vec_as::<f32>()
        .expect("reading the sum back")[0];
    assert_eq!(sum, 256.0 * 256.0 * 256.0, "on {adapter}");
}

#[test]
fn mnist_batch_reads_back_exactly_as_on_flex() {
    let (device, adapter) = wgpu_device();
    let (batcher, host) = host_batch();
    let flex = batcher.to_tensors(&host, &Device::flex()).unwrap();
    let wgpu = batcher.to_tensors(&host, device).unwrap();
    assert_eq!(wgpu.images.dims(), [BATCH, 1, 28, 28]);
    assert_eq!(wgpu.labels.dims(), [BATCH]);

    let flex_images = flex.images.try_into_vec_as::<f32>().unwrap();
    let wgpu_images = wgpu.images.try_into_vec_as::<f32>().unwrap();
    // Bit for bit: the upload and readback must not touch the values.
    let flex_bits: Vec<u32> = flex_images.iter().map(|v| v.to_bits()).collect();
    let wgpu_bits: Vec<u32> = wgpu_images.iter().map(|v| v.to_bits()).collect();
    assert!(
        flex_bits == wgpu_bits,
        "images differ between flex and {adapter}"
    );
    // And they are the batcher's own normalised values, not, say, all zero.
    assert_eq!(flex_images, batcher.normalize(&host).unwrap());
    assert!(
        wgpu_images.iter().any(|&v| v > 2.0),
        "an MNIST batch has ink"
    );

    let flex_labels = flex.labels.try_into_vec_as::<i64>().unwrap();
    let wgpu_labels = wgpu.labels.try_into_vec_as::<i64>().unwrap();
    assert_eq!(wgpu_labels, flex_labels, "labels differ on {adapter}");
    let host_labels: Vec<i64> = host.labels.iter().map(|&l| l as i64).collect();
    assert_eq!(wgpu_labels, host_labels);

    device
        .sync()
        .unwrap_or_else(|e| panic!("sync on {adapter}: {e}"));
}

#[test]
fn conv_net_forward_and_backward_agree_with_flex() {
    let (device, adapter) = wgpu_device();
    let (batcher, host) = host_batch();
    let want = run(&batcher, &host, &Device::flex().autodiff());
    let got = run(&batcher, &host, &device.clone().autodiff());
    device
        .sync()
        .unwrap_or_else(|e| panic!("sync on {adapter}: {e}"));

    eprintln!("loss: flex {} / wgpu {}", want.loss, got.loss);
    assert!(
        want.loss.is_finite() && want.loss > 0.0,
        "flex loss {}",
        want.loss
    );
    assert!(
        (got.loss - want.loss).abs() <= TOLERANCE * want.loss.abs(),
        "loss: wgpu {} vs flex {} on {adapter}",
        got.loss,
        want.loss
    );
    assert_close("logits", &got.logits, &want.logits);
    assert_close("conv kernel gradient", &got.conv_grad, &want.conv_grad);
    assert_close("dense weight gradient", &got.dense_grad, &want.dense_grad);
    assert!(
        got.dense_grad.iter().any(|&g| g != 0.0),
        "the gradient is not all zero"
    );
}

/// LeNet's parameter gradients for `host` on `device` through a tap at `detail`, with the wall
/// time of forward plus backward (the device synchronised before and after) and the trace.
fn lenet_iteration(
    model: &model_core::models::LeNet,
    batcher: &Batcher,
    host: &HostBatch,
    device: &Device,
    detail: model_core::tap::TapDetail,
) -> (Vec<Vec<f32>>, f64, model_core::tap::LayerTrace) {
    use burn::module::{Module, ModuleVisitor, Param};
    use burn::nn::loss::CrossEntropyLossConfig;
    use model_core::models::Classifier;
    use model_core::tap::Tap;

    let model = model.clone().fork(device);
    let batch = batcher.to_tensors(host, device).unwrap();
    device.sync().unwrap();
    let started = std::time::Instant::now();
    let mut tap = Tap::new(detail);
    let logits = model.forward_tapped(batch.images, &mut tap);
    let ce = CrossEntropyLossConfig::new().init(device);
    let loss = tap.layer("loss", "SoftmaxWithLoss", logits, |l| {
        ce.forward(l, batch.labels)
    });
    let (grads, trace) = tap.backward(loss, &model);
    device.sync().unwrap();
    let wall = started.elapsed().as_secs_f64();

    struct Collect<'a>(&'a burn::optim::GradientsParams, Vec<Vec<f32>>);
    impl ModuleVisitor for Collect<'_> {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            if let Some(g) = self.0.get::<D>(p.id) {
                self.1.push(g.try_into_vec_as::<f32>().unwrap());
            }
        }
    }
    let mut collect = Collect(&grads, Vec::new());
    model.visit(&mut collect);
    (collect.1, wall, trace.expect("the tap is on"))
}

/// The Tap on an asynchronous device: every clock read is synchronised, so the per-layer times
/// of a LeNet iteration add up to the iteration's wall time; and the cut graph's gradients on
/// wgpu equal flex's.
#[test]
fn lenet_through_the_tap_on_wgpu_times_every_layer_and_matches_flex() {
    use model_core::tap::TapDetail;
    let (device, adapter) = wgpu_device();
    let (batcher, host) = host_batch();
    let flex = Device::flex().autodiff();
    flex.seed(21);
    let model = model_core::models::LeNet::mnist(&flex);
    let wgpu = device.clone().autodiff();

    let (want, _, _) = lenet_iteration(&model, &batcher, &host, &flex, TapDetail::Full);
    let (got, _, full) = lenet_iteration(&model, &batcher, &host, &wgpu, TapDetail::Full);
    assert_eq!(got.len(), 8, "LeNet has 8 parameter tensors");
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_close(&format!("LeNet parameter gradient {i}"), g, w);
    }
    assert!(
        full.layers
            .iter()
            .all(|l| l.diff.is_some_and(|d| d.is_finite()))
    );

    // Warm (kernels compiled), then compare the trace's sum with the wall time.
    let mut ratios = Vec::new();
    for _ in 0..3 {
        let (_, wall, trace) = lenet_iteration(&model, &batcher, &host, &wgpu, TapDetail::Timing);
        assert!(
            trace
                .layers
                .iter()
                .all(|l| l.forward_seconds > 0.0 && l.backward_seconds > 0.0)
        );
        ratios.push(trace.total_seconds() / wall);
    }
    eprintln!("{adapter}: traced time / wall time over 3 iterations: {ratios:?}");
    let best = ratios.iter().cloned().fold(0.0, f64::max);
    assert!(
        best >= 0.9 && best <= 1.0 + 1e-9,
        "per-layer times cover {best:.3} of the iteration on {adapter}"
    );
}
