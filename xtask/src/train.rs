//! `cargo xtask train`: trains a reference model on a bundled dataset and reports held-out
//! accuracy and wall time. The trainer's end-to-end check (LeNet, one epoch of MNIST, SGD lr 0.01
//! momentum 0.9, batch 64, at least 97% on t10k) is
//! `cargo run --release -p xtask -- train --min-accuracy 0.97`.

use std::path::PathBuf;
use std::time::Instant;

use model_core::bundled::{self, DatasetChoice};
use model_core::models::ModelKind;
use model_core::tap::TapDetail;
use model_core::train::{OptimizerChoice, TrainConfig, Trainer, Unobserved};
use model_core::{DeviceChoice, LoadOptions, Normalization};
use serde::Serialize;

use crate::checklist::RunError;
use crate::model;

/// Options of `cargo xtask train`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// `mnist` or `cifar10` (bundled), or a dataset path.
    #[arg(long, default_value = "mnist")]
    pub dataset: String,
    /// lenet, resnet20 or alexnet (default: by the dataset's channels).
    #[arg(long, value_parser = |s: &str| s.parse::<ModelKind>())]
    pub model: Option<ModelKind>,
    #[arg(long, default_value_t = 1)]
    pub epochs: usize,
    /// Train this many iterations instead of whole epochs.
    #[arg(long)]
    pub iterations: Option<usize>,
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 0.01)]
    pub lr: f64,
    /// sgd (with --momentum), adam or rmsprop.
    #[arg(long, default_value = "sgd")]
    pub optimizer: String,
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f64,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Exit with status 1 when the held-out accuracy is below this.
    #[arg(long)]
    pub min_accuracy: Option<f64>,
    #[arg(long, value_parser = |s: &str| s.parse::<DeviceChoice>(), default_value = "flex")]
    pub device: DeviceChoice,
    /// off, timing or full: run every iteration through the tap at this detail.
    #[arg(long, default_value = "off")]
    pub tap: String,
    /// Also write the summary as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

#[derive(Debug, Serialize)]
struct Summary {
    model: String,
    dataset: String,
    device: String,
    profile: &'static str,
    iterations: usize,
    batch_size: usize,
    train_seconds: f64,
    images_per_second: f64,
    first_loss: f32,
    last_loss: f32,
    held_out: String,
    held_out_images: usize,
    held_out_accuracy: f64,
    held_out_loss: f64,
    eval_seconds: f64,
}

pub fn run(args: &Args) -> Result<u8, RunError> {
    let tap = match args.tap.as_str() {
        "off" => TapDetail::Off,
        "timing" => TapDetail::Timing,
        "full" => TapDetail::Full,
        other => {
            return Err(RunError::Usage(format!(
                "--tap {other}: expected off, timing or full"
            )));
        }
    };
    let optimizer = match args.optimizer.as_str() {
        "sgd" => OptimizerChoice::sgd(args.momentum),
        "adam" => OptimizerChoice::adam(),
        "rmsprop" => OptimizerChoice::rms_prop(),
        other => {
            return Err(RunError::Usage(format!(
                "--optimizer {other}: expected sgd, adam or rmsprop"
            )));
        }
    };
    let device = args.device.open()?.autodiff();
    let options = LoadOptions::default().with_cache(bundled::workspace_cache());
    let choice: DatasetChoice = args.dataset.parse().unwrap_or(DatasetChoice::Mnist);
    let splits = choice.open(&options)?;
    let (train, held_out) = match splits.held_out {
        Some(held_out) => (splits.train, held_out),
        None => {
            // One split only (the bundled CIFAR-10 test set): hold out a stratified tenth.
            let all = splits.train;
            let keep = all.stratified_indices(all.len() - all.len() / 10, args.seed)?;
            let mut taken = vec![false; all.len()];
            keep.iter().for_each(|&i| taken[i] = true);
            let rest: Vec<usize> = (0..all.len()).filter(|&i| !taken[i]).collect();
            (all.subset(&keep)?, all.subset(&rest)?)
        }
    };
    let normalization = match choice {
        DatasetChoice::Mnist => Normalization::mnist(),
        DatasetChoice::Cifar10 => Normalization::cifar10(),
        DatasetChoice::Path(_) => Normalization::measure(&train)?,
    };
    let kind = args
        .model
        .unwrap_or_else(|| model::default_kind(train.shape()));
    let run_model = model::build(kind, &train, &device, args.seed)?;
    let config = TrainConfig::new(optimizer, args.lr, normalization)
        .with_batch_size(args.batch_size)
        .with_seed(args.seed)
        .with_tap(tap)
        .with_progress(true);
    let profile = if cfg!(debug_assertions) {
        "dev"
    } else {
        "release"
    };
    let summary = crate::with_model!(run_model, m => {
        let mut trainer = Trainer::new(m, config, &device);
        let iterations = args.iterations.unwrap_or(args.epochs * trainer.iterations_per_epoch(&train));
        let started = Instant::now();
        let fit = trainer.fit(&train, iterations, &mut Unobserved).map_err(|e| RunError::Usage(e.to_string()))?;
        let train_seconds = started.elapsed().as_secs_f64();
        let eval = trainer.evaluate(&held_out).map_err(|e| RunError::Usage(e.to_string()))?;
        Summary {
            model: kind.to_string(),
            dataset: train.name().to_string(),
            device: args.device.to_string(),
            profile,
            iterations: fit.iterations,
            batch_size: args.batch_size,
            train_seconds,
            images_per_second: fit.images_per_second,
            first_loss: fit.first_loss,
            last_loss: fit.last_loss,
            held_out: held_out.name().to_string(),
            held_out_images: eval.images,
            held_out_accuracy: eval.accuracy,
            held_out_loss: eval.mean_loss,
            eval_seconds: eval.seconds,
        }
    });
    println!(
        "{} on {} ({} profile, {}): {} iterations of {} in {:.1} s ({:.0} images/s), loss {:.3} -> {:.3}",
        summary.model,
        summary.dataset,
        summary.profile,
        summary.device,
        summary.iterations,
        summary.batch_size,
        summary.train_seconds,
        summary.images_per_second,
        summary.first_loss,
        summary.last_loss
    );
    println!(
        "held out ({}, {} images): accuracy {:.2}%, loss {:.4} ({:.1} s)",
        summary.held_out,
        summary.held_out_images,
        100.0 * summary.held_out_accuracy,
        summary.held_out_loss,
        summary.eval_seconds
    );
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&summary).expect("serialisable");
        model_core::write_atomic(path, text.as_bytes()).map_err(|source| RunError::Write {
            path: path.clone(),
            source,
        })?;
    }
    if let Some(min) = args.min_accuracy
        && summary.held_out_accuracy < min
    {
        eprintln!(
            "held-out accuracy {:.4} is below --min-accuracy {min}",
            summary.held_out_accuracy
        );
        return Ok(1);
    }
    Ok(0)
}
