//! The per-layer table of AlexNet training iterations (forward and backward, batch 16,
//! 3x224x224) on this machine's CPU, through the tap at timing detail.
//!
//! The pixels are seeded random bytes: the timings of dense layers do not depend on the values.
//!
//! Run: `cargo run --release -p profiler --example alexnet_table [-- ITERATIONS]`

use burn::prelude::*;
use model_core::models::AlexNet;
use model_core::tap::TapDetail;
use model_core::train::{OptimizerChoice, TrainConfig, Trainer};
use model_core::{HostBatch, Normalization};
use profiler::{IterationRecord, Profile};
use rand::{Rng, SeedableRng};

fn main() {
    let iterations: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(5);
    let batch = 16;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let host = HostBatch {
        items: (0..batch).collect(),
        dims: [batch, 3, 224, 224],
        pixels: (0..batch * 3 * 224 * 224)
            .map(|_| rng.random::<u8>())
            .collect(),
        labels: (0..batch).map(|i| (i % 10) as u8).collect(),
    };
    let device = Device::flex().autodiff();
    device.seed(7);
    let config = TrainConfig::new(OptimizerChoice::sgd(0.9), 0.001, Normalization::unit(3))
        .with_tap(TapDetail::Timing);
    let mut trainer = Trainer::new(AlexNet::new(1000, &device), config, &device);
    let mut records = Vec::new();
    let origin = std::time::Instant::now();
    for i in 0..iterations + 2 {
        let started = std::time::Instant::now();
        let (outcome, _) = trainer
            .step(&host, 0.0, 0, &mut model_core::train::Unobserved)
            .expect("a finite iteration");
        if i >= 2 {
            records.push(IterationRecord {
                start: started.duration_since(origin).as_secs_f64(),
                wall_seconds: started.elapsed().as_secs_f64(),
                optimizer_seconds: outcome.optimizer_seconds,
                trace: outcome.trace.expect("the tap is on"),
            });
        }
    }
    let p = Profile::from_records(&records, batch);
    println!(
        "AlexNet, batch {batch}, {} timed iterations: {:.1} ms per iteration ({:.1} images/s)",
        p.iterations, p.iteration.mean_ms, p.samples_per_second
    );
    println!("| layer | kind | forward ms (median) | backward ms (median) | share | output |");
    println!("|---|---|---|---|---|---|");
    for l in &p.layers {
        println!(
            "| {} | {} | {:.1} | {:.1} | {:.1}% | {:?} |",
            l.name,
            l.kind,
            l.forward.median_ms,
            l.backward.median_ms,
            100.0 * l.share,
            l.output_shape
        );
    }
    println!(
        "| optimizer step | SGD | {:.1} | - | {:.1}% | |",
        p.optimizer.median_ms,
        100.0 * p.optimizer.mean_ms / p.iteration.mean_ms
    );
    println!(
        "| untraced | | {:.1} | - | {:.1}% | |",
        p.untraced.median_ms,
        100.0 * p.untraced.mean_ms / p.iteration.mean_ms
    );
}
