//! The checklist's frame: choose steps and faults, load the dataset, run the steps in checklist
//! order, write `report.json` atomically, print the summary.

use std::path::PathBuf;
use std::time::Instant;

use clap::ValueEnum;
use indicatif::{ProgressBar, ProgressStyle};
use model_core::bundled::{self, DatasetChoice, Splits};
use model_core::models::ModelKind;

use crate::{gradients_step, model, timings_step, weights_step};
use model_core::{
    DataError, DeviceChoice, DeviceError, LoadOptions, LoadStrategy, Normalization, Report,
    RunInfo, Step, StepReport, ToolInfo, Verdict,
};

/// `println!` that ignores a closed stdout (`cargo xtask checklist | head`) instead of panicking.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// Options of `cargo xtask checklist`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Steps to run, comma-separated, in any order (they run in checklist order):
    /// data, weights, timings, gradients, results. Default: every step that is built.
    #[arg(long, value_delimiter = ',', value_parser = parse_step)]
    pub steps: Option<Vec<Step>>,
    /// `mnist` or `cifar10` (bundled), or a path: a folder of IDX files, CIFAR-10 binary files,
    /// or an image folder root/<class>/<image>.
    #[arg(long, default_value = "mnist")]
    pub dataset: String,
    /// Report folder.
    #[arg(long, default_value = "report")]
    pub out: PathBuf,
    /// Seed of every random choice (subsets, shuffling, initialisation).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Plant a named fault, NAME or NAME=VALUE, to see what it looks like (repeatable).
    #[arg(long = "inject", value_name = "NAME[=VALUE]")]
    pub inject: Vec<String>,
    /// When pixels are read: all into memory first, or from disk on every batch (also
    /// `--loader load-all|on-demand|cached`).
    #[arg(long, alias = "loader", value_enum, default_value_t = Loading::LoadAll)]
    pub loading: Loading,
    /// Samples kept by `--loading on-demand-cached`.
    #[arg(long, default_value_t = 10_000)]
    pub cache_capacity: usize,
    /// The model: lenet, resnet20 or alexnet. Default: LeNet for one-channel images (MNIST),
    /// ResNet-20 otherwise (CIFAR-10).
    #[arg(long, value_parser = parse_model)]
    pub model: Option<ModelKind>,
    /// PyTorch weights to import into the model by parameter name (a state dict, or a
    /// `{'state_dict': {'module.…': ..}}` checkpoint).
    #[arg(long, value_name = "FILE")]
    pub weights: Option<PathBuf>,
    /// The device: flex (CPU), or wgpu, vulkan, cuda when built with that feature.
    #[arg(long, value_parser = parse_device, default_value = "flex")]
    pub device: DeviceChoice,
    /// Training iterations for the steps that train.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    pub iterations: u64,
    /// Per-channel normalisation of the images: auto (MNIST's figures for MNIST; for CIFAR-10,
    /// CIFAR-10's, or ImageNet's when --weights is given, as torchvision-style pre-trained models
    /// such as the bundled ResNet-20 were trained), mnist, cifar10, imagenet, or measured (on the
    /// training split).
    #[arg(long, value_enum, default_value_t = NormalizationChoice::Auto)]
    pub normalization: NormalizationChoice,
    /// Evaluate on a stratified sample of this many held-out images instead of the whole split.
    #[arg(long)]
    pub eval_samples: Option<usize>,
}

/// `--normalization` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NormalizationChoice {
    Auto,
    Mnist,
    Cifar10,
    Imagenet,
    Measured,
}

/// `--loading` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Loading {
    LoadAll,
    #[value(alias = "on-demand")]
    OnDemandNoCache,
    #[value(alias = "cached")]
    OnDemandCached,
}

fn parse_step(s: &str) -> Result<Step, String> {
    s.parse()
}

fn parse_model(s: &str) -> Result<ModelKind, String> {
    s.parse()
}

fn parse_device(s: &str) -> Result<DeviceChoice, String> {
    s.parse()
}

/// The steps built so far; each step's issue adds its own.
const BUILT_STEPS: &[Step] = &[Step::Weights, Step::Timings, Step::Gradients];

/// A fault that `--inject` can plant: its name, the step it targets, what it does.
struct Fault {
    name: &'static str,
    step: Step,
    about: &'static str,
}

/// The faults known so far; each step's issue adds its own.
const FAULTS: &[Fault] = &[
    Fault {
        name: "skip-load",
        step: Step::Weights,
        about: "skip-load=LAYER: the load leaves LAYER at its initial values",
    },
    Fault {
        name: "drop-tensors",
        step: Step::Weights,
        about: "drop-tensors=LAYER: the file lacks LAYER's tensors",
    },
    Fault {
        name: "key-prefix",
        step: Step::Weights,
        about: "key-prefix=PFX: every key in the file carries an extra prefix",
    },
    Fault {
        name: "slow-layer",
        step: Step::Timings,
        about: "slow-layer=NAME: NAME's forward spends 200 ms more",
    },
    Fault {
        name: "lr-x100",
        step: Step::Gradients,
        about: "the learning rate times 100",
    },
    Fault {
        name: "nan",
        step: Step::Gradients,
        about: "nan=LAYER: NaN written into LAYER's weights a third of the way through",
    },
    Fault {
        name: "bias-lr-mult",
        step: Step::Gradients,
        about: "bias-lr-mult=LAYER:FACTOR: LAYER's bias learns FACTOR times faster",
    },
];

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub verdict: Verdict,
}

impl Outcome {
    pub fn exit_code(&self) -> u8 {
        if self.verdict == Verdict::Fail { 1 } else { 0 }
    }
}

/// A usage or input error: printed on one line, exit status 2.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Device(#[from] DeviceError),
    #[error("{}: cannot write: {source}; the previous report is left as it was", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Runs the checklist.
pub fn run(args: &Args) -> Result<Outcome, RunError> {
    let started = Instant::now();
    let steps = choose_steps(args.steps.as_deref())?;
    let injected = check_faults(&args.inject)?;
    let strategy = match args.loading {
        Loading::LoadAll => LoadStrategy::LoadAll,
        Loading::OnDemandNoCache => LoadStrategy::OnDemandNoCache,
        Loading::OnDemandCached => LoadStrategy::OnDemandCached {
            capacity: args.cache_capacity,
        },
    };
    let options = LoadOptions::new(strategy).with_cache(bundled::workspace_cache());
    let choice: DatasetChoice = args.dataset.parse().unwrap_or(DatasetChoice::Mnist);
    let device = args.device.open()?;

    std::fs::create_dir_all(&args.out).map_err(|source| RunError::Write {
        path: args.out.clone(),
        source,
    })?;

    let spinner = ProgressBar::new_spinner().with_message(format!("loading {choice} ({strategy})"));
    spinner.set_style(
        ProgressStyle::with_template("{spinner} {msg} {elapsed}").expect("valid template"),
    );
    spinner.enable_steady_tick(std::time::Duration::from_millis(100));
    let load_started = Instant::now();
    let splits = choice.open(&options);
    spinner.finish_and_clear();
    let splits = splits?;
    let load_seconds = load_started.elapsed().as_secs_f64();
    print_datasets(&splits, load_seconds);

    let kind = args
        .model
        .unwrap_or_else(|| model::default_kind(splits.train.shape()));
    let mut run_model = model::build(kind, &splits.train, &device.clone().autodiff(), args.seed)?;
    if let Some(weights) = &args.weights {
        let outcome = run_model.import(weights)?;
        say!(
            "weights {}: {} tensors applied, {} missing, {} unused",
            weights.display(),
            outcome.applied.len(),
            outcome.missing.len(),
            outcome.unused.len()
        );
    }
    let params = crate::with_model!(&run_model, m => model_core::tap::trainable_param_count(m));
    say!(
        "model {} ({params} trainable parameters) on {}",
        run_model.name(),
        args.device
    );

    let mut report = Report::new(
        ToolInfo {
            name: "nn-checklist".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        },
        RunInfo {
            dataset: choice.to_string(),
            model: Some(run_model.name()),
            device: args.device.to_string(),
            seed: args.seed,
            injected,
            seconds: 0.0,
            weights: args.weights.as_ref().map(|w| w.display().to_string()),
            iterations: Some(args.iterations as usize),
        },
    );
    report.datasets.push(splits.train.summary());
    if let Some(held_out) = &splits.held_out {
        report.datasets.push(held_out.summary());
    }
    let normalization = match args.normalization {
        NormalizationChoice::Mnist => Normalization::mnist(),
        NormalizationChoice::Cifar10 => Normalization::cifar10(),
        NormalizationChoice::Imagenet => bundled::resnet20_normalization(),
        NormalizationChoice::Measured => Normalization::measure(&splits.train)?,
        NormalizationChoice::Auto => {
            match (&choice, splits.train.shape().channels, &args.weights) {
                (DatasetChoice::Mnist, _, _) => Normalization::mnist(),
                (DatasetChoice::Cifar10, _, Some(_)) => bundled::resnet20_normalization(),
                (DatasetChoice::Cifar10, _, None) => Normalization::cifar10(),
                _ => Normalization::measure(&splits.train)?,
            }
        }
    };
    let eval = match &splits.held_out {
        Some(held_out) => held_out.clone(),
        // A single split (the bundled CIFAR-10 test set): it is the labelled test split.
        None => splits.train.clone(),
    };
    let eval = match args.eval_samples {
        Some(n) if n < eval.len() => eval.stratified_subset(n, args.seed)?,
        _ => eval,
    };
    let context = StepContext {
        args,
        choice: &choice,
        options: &options,
        kind,
        run_model: &run_model,
        train: &splits.train,
        eval: &eval,
        normalization: &normalization,
        device: device.clone().autodiff(),
    };
    for &step in &steps {
        let started = Instant::now();
        let mut step_report = run_step(step, &context)?;
        step_report.seconds = started.elapsed().as_secs_f64();
        report.push(step_report);
    }
    report.run.seconds = started.elapsed().as_secs_f64();
    let path = args.out.join("report.json");
    report.write(&path).map_err(|source| RunError::Write {
        path: path.clone(),
        source,
    })?;
    print_summary(&report, &path);
    Ok(Outcome {
        verdict: report.verdict,
    })
}

/// What every step gets from the frame.
pub(crate) struct StepContext<'a> {
    pub args: &'a Args,
    pub choice: &'a DatasetChoice,
    pub options: &'a LoadOptions,
    pub kind: ModelKind,
    pub run_model: &'a model::RunModel,
    pub train: &'a model_core::Dataset,
    pub eval: &'a model_core::Dataset,
    pub normalization: &'a Normalization,
    /// The run's device, with autodiff.
    pub device: burn::prelude::Device,
}

/// Runs one step. Each step's issue replaces its arm with the step's entry point (and adds the
/// step to `BUILT_STEPS`); `choose_steps` refuses unbuilt steps before anything runs.
fn run_step(step: Step, cx: &StepContext<'_>) -> Result<StepReport, RunError> {
    match step {
        Step::Weights => {
            let faults = weights_step::Faults::from_injected(&cx.args.inject)?;
            let prepared = weights_step::prepare(cx, &faults)?;
            weights_step::run(
                &prepared,
                Some(cx.eval),
                cx.normalization,
                &cx.device,
                &cx.args.out,
            )
        }
        Step::Timings => timings_step::run(cx),
        Step::Gradients => gradients_step::run(cx),
        Step::Data | Step::Results => {
            Err(RunError::Usage(format!("step `{step}` is not built yet")))
        }
    }
}

fn choose_steps(requested: Option<&[Step]>) -> Result<Vec<Step>, RunError> {
    let Some(requested) = requested else {
        return Ok(BUILT_STEPS.to_vec());
    };
    let mut steps = requested.to_vec();
    steps.sort();
    steps.dedup();
    if let Some(missing) = steps.iter().find(|s| !BUILT_STEPS.contains(s)) {
        let built: Vec<&str> = BUILT_STEPS.iter().map(|s| s.as_str()).collect();
        return Err(RunError::Usage(format!(
            "step `{missing}` ({}) is not built yet; built steps: {}",
            missing.title(),
            if built.is_empty() {
                "none yet".to_string()
            } else {
                built.join(", ")
            }
        )));
    }
    Ok(steps)
}

fn check_faults(inject: &[String]) -> Result<Vec<String>, RunError> {
    for spec in inject {
        let name = spec.split_once('=').map_or(spec.as_str(), |(n, _)| n);
        if !FAULTS.iter().any(|f| f.name == name) {
            let known: Vec<String> = FAULTS
                .iter()
                .map(|f| format!("{} ({}: {})", f.name, f.step, f.about))
                .collect();
            return Err(RunError::Usage(format!(
                "unknown fault `{name}` for --inject; known faults: {}",
                if known.is_empty() {
                    "none yet".to_string()
                } else {
                    known.join(", ")
                }
            )));
        }
    }
    Ok(inject.to_vec())
}

fn print_datasets(splits: &Splits, seconds: f64) {
    let all = std::iter::once(&splits.train).chain(splits.held_out.as_ref());
    for d in all {
        let s = d.summary();
        say!(
            "{}: {} samples of {}, {} classes",
            s.name,
            s.samples,
            s.shape,
            s.class_names.len()
        );
        let counts: Vec<String> = s
            .class_names
            .iter()
            .zip(&s.label_counts)
            .map(|(c, n)| format!("{c} {n}"))
            .collect();
        say!("  per label: {}", counts.join(", "));
        say!("  source: {}", s.source);
    }
    say!("loaded in {seconds:.2} s");
}

fn print_summary(report: &Report, path: &std::path::Path) {
    say!("");
    say!("{:<10} {:<8} reason", "step", "verdict");
    if report.steps.is_empty() {
        say!(
            "{:<10} {:<8} no step is built yet; the data loaded",
            "-",
            "-"
        );
    }
    for step in &report.steps {
        let reason = step
            .findings
            .iter()
            .rev()
            .max_by_key(|f| f.verdict)
            .map(|f| f.message.clone())
            .unwrap_or_else(|| "no findings".into());
        say!(
            "{:<10} {:<8} {reason}",
            step.step.as_str(),
            step.verdict.as_str()
        );
    }
    say!(
        "verdict: {} ({} s); report: {}",
        report.verdict,
        format_args!("{:.1}", report.run.seconds),
        path.display()
    );
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Any requested set of steps runs in checklist order, once each, or is refused by the
        /// name of its first step that is not built.
        #[test]
        fn requested_steps_run_in_order_or_are_refused_by_name(picks in proptest::collection::vec(0usize..5, 0..8)) {
            let requested: Vec<Step> = picks.iter().map(|&i| Step::ALL[i]).collect();
            match choose_steps(Some(&requested)) {
                Ok(steps) => {
                    prop_assert!(steps.windows(2).all(|w| w[0] < w[1]));
                    prop_assert!(steps.iter().all(|s| BUILT_STEPS.contains(s) && requested.contains(s)));
                }
                Err(RunError::Usage(msg)) => {
                    let first_unbuilt = Step::ALL.iter().find(|s| requested.contains(s) && !BUILT_STEPS.contains(s)).unwrap();
                    let expected = format!("step `{first_unbuilt}`");
                    prop_assert!(msg.contains(&expected), "{}", msg);
                }
                Err(other) => prop_assert!(false, "unexpected error {}", other),
            }
        }

        /// Any fault name that is not registered is a usage error that names it.
        #[test]
        fn unknown_faults_are_refused_by_name(name in "[a-z_]{1,16}", value in proptest::option::of("[0-9.]{1,4}")) {
            let spec = match &value { Some(v) => format!("{name}={v}"), None => name.clone() };
            let result = check_faults(std::slice::from_ref(&spec));
            if FAULTS.iter().any(|f| f.name == name) {
                prop_assert!(result.is_ok());
            } else {
                let refused = matches!(&result, Err(RunError::Usage(m)) if m.contains(&format!("`{name}`")));
                prop_assert!(refused, "{:?}", result);
            }
        }
    }
}
