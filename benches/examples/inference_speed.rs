//! Images per second of Burn's CPU forward against the lowered [`InferenceNet`], for LeNet
//! (28x28) and the real ResNet-20 (32x32), at the batch sizes occlusion uses (all windows of
//! one map in one batch, and one window at a time). Interleaved runs, medians. Then the ceiling:
//! the multiply-adds per second of one thread's matrix product on a ResNet-20 stage-1 tile (455 x 144
//! times 144 x 16), with nothing else around it. Last, occlusion's inputs (every window of a map
//! painted with zeros) through the whole lowered forward and through the incremental one
//! (`forward_near`, from the unoccluded image's activations), all windows in one batch and one
//! window per call, interleaved.
//!
//! Run: `cargo run --release -p benches --example inference_speed [-- REPEATS]`

benches::use_mimalloc!();

use std::time::Instant;

use burn::prelude::*;
use model_core::bundled;
use model_core::inference::InferenceNet;
use model_core::models::{Classifier, LeNet, build_seeded};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn compare<M: Classifier>(name: &str, model: &M, batch: usize, repeats: usize) {
    let device = Device::flex();
    let net: InferenceNet = model.inference_net().expect("the model lowers");
    let s = model.input_shape();
    let values: Vec<f32> = (0..batch * s.len())
        .map(|i| ((i * 7919) % 255) as f32 / 127.0 - 1.0)
        .collect();
    let tensor = || {
        Tensor::<4>::from_data(
            TensorData::new(values.clone(), [batch, s.channels, s.height, s.width]),
            &device,
        )
    };
    // Enough calls per timing that one timing takes about 50 ms.
    let calls = (20_000 / (batch * s.len() / 100).max(1)).clamp(1, 200);
    let mut burn = Vec::new();
    let mut ours = Vec::new();
    for _ in 0..repeats + 1 {
        let t = Instant::now();
        for _ in 0..calls {
            std::hint::black_box(model.forward(tensor()).try_into_vec_as::<f32>().unwrap());
        }
        burn.push((calls * batch) as f64 / t.elapsed().as_secs_f64());
        let t = Instant::now();
        for _ in 0..calls {
            std::hint::black_box(net.forward(tensor()).try_into_vec_as::<f32>().unwrap());
        }
        ours.push((calls * batch) as f64 / t.elapsed().as_secs_f64());
    }
    // The first round warms both up.
    let (burn, ours) = (median(burn[1..].to_vec()), median(ours[1..].to_vec()));
    println!(
        "{name} batch {batch}: burn {burn:.0} images/s, lowered {ours:.0} images/s, ratio {:.2}x",
        ours / burn
    );
}

/// One thread's lowered-layer product ([`model_core::inference::matmul`]) on `m x k` times
/// `k x n`, multiply-adds per second.
fn gemm_rate(m: usize, k: usize, n: usize) -> f64 {
    let lhs: Vec<f32> = (0..m * k).map(|i| (i % 13) as f32 * 0.1).collect();
    let rhs: Vec<f32> = (0..k * n).map(|i| (i % 7) as f32 * 0.1).collect();
    let mut dst = vec![0f32; m * n];
    let iters = (2_000_000_000 / (m * k * n)).max(10);
    let t = Instant::now();
    for _ in 0..iters {
        model_core::inference::matmul(&mut dst, &lhs, &rhs, m, k, n);
    }
    std::hint::black_box(&dst);
    (iters * m * k * n) as f64 / t.elapsed().as_secs_f64()
}

/// Windows per second of `forward_host` (whole) and `forward_near` (incremental) on the
/// occluded copies of one image (window `w`, stride 2, zeros), in one batch and one per call.
fn near_compare<M: Classifier>(name: &str, model: &M, w: usize, repeats: usize) {
    let net: InferenceNet = model.inference_net().expect("the model lowers");
    let s = model.input_shape();
    let image: Vec<f32> = (0..s.len())
        .map(|i| ((i * 7919) % 255) as f32 / 127.0 - 1.0)
        .collect();
    let mut copies = Vec::new();
    for y0 in (0..=s.height - w).step_by(2) {
        for x0 in (0..=s.width - w).step_by(2) {
            let mut c = image.clone();
            for ch in 0..s.channels {
                for y in y0..y0 + w {
                    let row = (ch * s.height + y) * s.width;
                    c[row + x0..row + x0 + w].fill(0.0);
                }
            }
            copies.extend(c);
        }
    }
    let n = copies.len() / s.len();
    let reference = net.reference(&image);
    let (mut whole_work, mut near_work) = (0u64, 0u64);
    for c in copies.chunks_exact(s.len()) {
        let work = net.near_work(&reference, c);
        whole_work += work.whole;
        near_work += work.incremental;
    }
    println!(
        "{name} occlusion w{w} s2: {:.2} M multiply-adds per window whole, {:.2} M incremental ({:.0}%)",
        whole_work as f64 / n as f64 / 1e6,
        near_work as f64 / n as f64 / 1e6,
        100.0 * near_work as f64 / whole_work as f64
    );
    for batched in [true, false] {
        let (mut whole, mut near) = (Vec::new(), Vec::new());
        for _ in 0..repeats + 1 {
            let t = Instant::now();
            if batched {
                std::hint::black_box(net.forward_host(&copies, n));
            } else {
                for c in copies.chunks_exact(s.len()) {
                    std::hint::black_box(net.forward_host(c, 1));
                }
            }
            whole.push(n as f64 / t.elapsed().as_secs_f64());
            let t = Instant::now();
            if batched {
                std::hint::black_box(net.forward_near(&reference, &copies, n));
            } else {
                for c in copies.chunks_exact(s.len()) {
                    std::hint::black_box(net.forward_near(&reference, c, 1));
                }
            }
            near.push(n as f64 / t.elapsed().as_secs_f64());
        }
        let (whole, near) = (median(whole[1..].to_vec()), median(near[1..].to_vec()));
        println!(
            "{name} occlusion w{w} s2, {n} windows {}: whole {whole:.0} windows/s, incremental {near:.0} windows/s, ratio {:.2}x",
            if batched {
                "in one batch"
            } else {
                "one per call"
            },
            near / whole
        );
    }
}

fn main() {
    let repeats: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(5);
    let device = Device::flex();
    let lenet = build_seeded(&device, 1, LeNet::mnist);
    let resnet = bundled::resnet20_pretrained(&device).expect("the bundled ResNet-20");
    for batch in [145, 1] {
        compare("lenet", &lenet, batch, repeats);
    }
    for batch in [170, 1] {
        compare("resnet20", &resnet, batch, repeats);
    }
    println!(
        "gemm 455x144x16 on one thread: {:.1} G multiply-adds/s",
        gemm_rate(455, 144, 16) / 1e9
    );
    near_compare("lenet", &lenet, 6, repeats * 4);
    near_compare("resnet20", &resnet, 8, repeats * 4);
}
