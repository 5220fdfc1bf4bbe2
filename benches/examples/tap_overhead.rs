//! The Tap's cost, measured interleaved: three LeNet trainers (tap off, timing only, full
//! detail) take turns on the same real MNIST batches of 64, one training iteration each per
//! round, so drift on a noisy machine hits all three alike. Prints per-iteration median, mean
//! and 10th percentile, and each mode's ratio to plain.
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
    let rounds: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(200);
    let train = bundled::mnist(MnistSplit::Train, &LoadOptions::default().with_cache(bundled::workspace_cache()))
        .expect("bundled MNIST");
    let batcher = Batcher::new(64, 42, Normalization::mnist()).drop_last(true);
    let plan = batcher.plan(train.len(), 0);
    let details = [TapDetail::Off, TapDetail::Timing, TapDetail::Full];
    let mut trainers: Vec<Trainer<LeNet>> = details
        .iter()
        .map(|&detail| {
            let device = Device::flex().autodiff();
            device.seed(1);
            let config = TrainConfig::new(OptimizerChoice::sgd(0.9), 0.01, Normalization::mnist()).with_tap(detail);
            Trainer::new(LeNet::mnist(&device), config, &device)
        })
        .collect();
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); details.len()];
    let warmup = 20;
    for round in 0..rounds + warmup {
        let started = Instant::now();
        let batch = batcher.assemble(&train, &plan[round % plan.len()]).expect("reads");
        let data_seconds = started.elapsed().as_secs_f64();
        for (k, trainer) in trainers.iter_mut().enumerate() {
            let started = Instant::now();
            trainer.step(&batch, data_seconds, 0, &mut Unobserved).expect("finite");
            if round >= warmup {
                times[k].push(started.elapsed().as_secs_f64() * 1e3);
            }
        }
    }
    let stats = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (v[v.len() / 2], v.iter().sum::<f64>() / v.len() as f64, v[v.len() / 10])
    };
    let base = stats(&mut times[0].clone());
    println!("LeNet training iteration, batch 64, {rounds} interleaved rounds (ms)");
    println!("{:<8} {:>8} {:>8} {:>8} {:>10} {:>10}", "mode", "median", "mean", "p10", "x median", "x p10");
    for (k, detail) in details.iter().enumerate() {
        let (median, mean, p10) = stats(&mut times[k]);
        println!(
            "{:<8} {:>8.2} {:>8.2} {:>8.2} {:>10.3} {:>10.3}",
            format!("{detail:?}").to_lowercase(),
            median,
            mean,
            p10,
            median / base.0,
            p10 / base.2
        );
    }
}
