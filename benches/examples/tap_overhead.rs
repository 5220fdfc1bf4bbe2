//! The Tap's cost, measured interleaved: LeNet trainers (tap off, timing only, full detail, and
//! the gradient monitor watching every iteration or every 10th) take turns on the same real
//! MNIST batches of 64, one training iteration each per round, so drift on a noisy machine hits
//! all alike. Prints per-iteration median, mean and 10th percentile, and each mode's ratio to
//! plain.
//!
//! Run: `cargo run --release -p benches --example tap_overhead [-- ROUNDS]` (default 200).

benches::use_mimalloc!();

use std::time::Instant;

use burn::prelude::*;
use model_core::bundled::{self, MnistSplit};
use model_core::models::LeNet;
use model_core::tap::TapDetail;
use model_core::train::{OptimizerChoice, TrainConfig, Trainer, Unobserved};
use model_core::{Batcher, LoadOptions, Normalization};

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200);
    let train = bundled::mnist(
        MnistSplit::Train,
        &LoadOptions::default().with_cache(bundled::workspace_cache()),
    )
    .expect("bundled MNIST");
    let batcher = Batcher::new(64, 42, Normalization::mnist()).drop_last(true);
    let plan = batcher.plan(train.len(), 0);
    // (name, tap detail, tap every k-th iteration, gradient monitor)
    let modes = [
        ("off", TapDetail::Off, 1, false),
        ("timing", TapDetail::Timing, 1, false),
        ("full", TapDetail::Full, 1, false),
        ("monitor/1", TapDetail::Full, 1, true),
        ("monitor/10", TapDetail::Full, 10, true),
    ];
    let mut trainers: Vec<Trainer<LeNet>> = modes
        .iter()
        .map(|&(_, detail, every, _)| {
            let device = Device::flex().autodiff();
            device.seed(1);
            let config = TrainConfig::new(OptimizerChoice::sgd(0.9), 0.01, Normalization::mnist())
                .with_tap(detail)
                .with_tap_every(every);
            Trainer::new(LeNet::mnist(&device), config, &device)
        })
        .collect();
    let mut monitors: Vec<grad_monitor::GradMonitor> = modes
        .iter()
        .map(|_| grad_monitor::GradMonitor::new(grad_monitor::MonitorConfig::default(), &[]))
        .collect();
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
    let warmup = 20;
    for round in 0..rounds + warmup {
        let started = Instant::now();
        let batch = batcher
            .assemble(&train, &plan[round % plan.len()])
            .expect("reads");
        let data_seconds = started.elapsed().as_secs_f64();
        for (k, trainer) in trainers.iter_mut().enumerate() {
            let started = Instant::now();
            if modes[k].3 {
                trainer
                    .step(&batch, data_seconds, 0, &mut monitors[k])
                    .expect("finite");
            } else {
                trainer
                    .step(&batch, data_seconds, 0, &mut Unobserved)
                    .expect("finite");
            }
            if round >= warmup {
                times[k].push(started.elapsed().as_secs_f64() * 1e3);
            }
        }
    }
    let stats = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (
            v[v.len() / 2],
            v.iter().sum::<f64>() / v.len() as f64,
            v[v.len() / 10],
        )
    };
    let base = stats(&mut times[0].clone());
    println!("LeNet training iteration, batch 64, {rounds} interleaved rounds (ms)");
    println!(
        "{:<11} {:>8} {:>8} {:>8} {:>10} {:>10}",
        "mode", "median", "mean", "p10", "x median", "x p10"
    );
    for (k, (name, ..)) in modes.iter().enumerate() {
        let (median, mean, p10) = stats(&mut times[k]);
        println!(
            "{:<11} {:>8.2} {:>8.2} {:>8.2} {:>10.3} {:>10.3}",
            name,
            median,
            mean,
            p10,
            median / base.0,
            p10 / base.2
        );
    }
}
