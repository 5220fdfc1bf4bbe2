//! The data check on a bundled dataset, as the checklist runs it, printing the figures.
//!
//! ```sh
//! cargo run -p data-check --example data_check -- [--dataset mnist|cifar10] [--points N|all]
//!     [--shuffle-labels] [--seed S] [--out DIR] [--progress]
//! ```
//!
//! Writes the pictures under `DIR/data/` and the step's report as `DIR/data_step.json`.

use std::path::PathBuf;

use data_check::{DataCheck, step_report, with_shuffled_labels};
use model_core::bundled::{self, MnistSplit};
use model_core::{LoadOptions, LoadStrategy};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut dataset = "mnist".to_string();
    let mut points: Option<usize> = None;
    let mut shuffle = false;
    let mut seed = 0u64;
    let mut out = PathBuf::from("target/data-check");
    let mut progress = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--dataset" => dataset = args.next().ok_or("--dataset NAME")?,
            "--points" => {
                let v = args.next().ok_or("--points N|all")?;
                points = if v == "all" { None } else { Some(v.parse()?) };
            }
            "--shuffle-labels" => shuffle = true,
            "--seed" => seed = args.next().ok_or("--seed S")?.parse()?,
            "--out" => out = args.next().ok_or("--out DIR")?.into(),
            "--progress" => progress = true,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let options = LoadOptions::new(LoadStrategy::LoadAll).with_cache(bundled::workspace_cache());
    let mut ds = match dataset.as_str() {
        "mnist" => bundled::mnist(MnistSplit::Test, &options)?,
        "cifar10" => bundled::cifar10_test(&options)?,
        other => return Err(format!("unknown dataset {other}; mnist or cifar10").into()),
    };
    if shuffle {
        ds = with_shuffled_labels(&ds, seed)?;
    }
    let mut builder = DataCheck::builder().seed(seed).progress(progress);
    builder = match points {
        Some(n) => builder.points(n),
        None => builder.all_points(),
    };
    let check = builder.build()?;
    let est = check.estimate(&ds)?;
    eprintln!(
        "estimate: {} points, {} MiB, {:.1} s ({:.1} s of t-SNE)",
        est.points,
        est.bytes >> 20,
        est.seconds,
        est.tsne_seconds
    );
    let outcome = check.run(&ds, &out)?;
    let report = step_report(&outcome);
    std::fs::create_dir_all(&out)?;
    model_core::write_atomic(
        &out.join("data_step.json"),
        serde_json::to_string_pretty(&report)?.as_bytes(),
    )?;
    for f in &report.findings {
        eprintln!("{} {} {}: {}", f.verdict, f.check, f.subject, f.message);
    }
    println!(
        "{}",
        serde_json::json!({
            "dataset": outcome.dataset,
            "verdict": report.verdict,
            "metrics": report.metrics,
            "timings": outcome.timings,
            "artifacts": report.artifacts,
        })
    );
    Ok(())
}
