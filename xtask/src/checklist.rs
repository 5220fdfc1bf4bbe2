//! The checklist's frame: choose steps and faults, load the dataset, run the steps in checklist
//! order, write `report.json` atomically, print the summary.

use std::cell::OnceCell;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use clap::ValueEnum;
use indicatif::{ProgressBar, ProgressStyle};
use model_core::bundled::{self, DatasetChoice, Splits};
use model_core::models::ModelKind;

use crate::settings::{self, Settings};
use crate::training::{self, TrainingRun};
use crate::{
    baseline, data_step, gradients_step, html, model, results_step, timings_step, weights_step,
};
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
#[derive(Debug, Clone, clap::Args)]
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
    /// Iterations of the one training run the steps share.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..))]
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
    /// Samples the data step maps with t-SNE (a stratified sample; default from the settings,
    /// sized so the whole checklist stays within its time budget).
    #[arg(long)]
    pub tsne_points: Option<usize>,
    /// A TOML file with every threshold and option (see --print-config); flags given here win.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Set any one setting of the file (see --print-config) from the command line:
    /// `--set results.window=8 --set gradients.explode_growth=1000` (repeatable; wins over --config).
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
    pub set: Vec<String>,
    /// Print the default settings, each documented, as a TOML file, and exit.
    #[arg(long)]
    pub print_config: bool,
    /// An earlier report.json: a lower accuracy, a verdict that got worse or a layer that got
    /// slower (see [baseline] in --print-config) fails the run.
    #[arg(long, value_name = "REPORT")]
    pub baseline: Option<PathBuf>,
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
const BUILT_STEPS: &[Step] = &Step::ALL;

/// A fault that `--inject` can plant: its name, the step it targets, what it does.
struct Fault {
    name: &'static str,
    step: Step,
    about: &'static str,
}

/// The faults known so far; each step's issue adds its own.
const FAULTS: &[Fault] = &[
    Fault {
        name: "shuffle-labels",
        step: Step::Data,
        about: "the labels shuffled before the data step",
    },
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
        about: "slow-layer=NAME: NAME's forward spends timings.slow_layer_seconds (0.1 s) more",
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
    #[error("interrupted; the previous report is left as it was")]
    Interrupted,
    #[error("{}: cannot write: {source}; the previous report is left as it was", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Set by Ctrl-C: the run stops at the next iteration or step boundary and writes what it has.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Whether Ctrl-C was pressed.
pub(crate) fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
}

/// The first Ctrl-C asks the run to stop and write what it has; a second one ends it at once.
fn catch_interrupts() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let _ = ctrlc::set_handler(|| {
            if INTERRUPTED.swap(true, Ordering::SeqCst) {
                std::process::exit(130);
            }
            eprintln!("\ninterrupted: finishing the current iteration, then writing what the run has (Ctrl-C again to quit at once)");
        });
    });
}

/// Runs the checklist. `explicit` tells which flags were given on the command line (they win
/// over `--config`).
pub fn run(args: &Args, explicit: &dyn Fn(&str) -> bool) -> Result<Outcome, RunError> {
    if args.print_config {
        say!("{}", settings::print_defaults().trim_end());
        return Ok(Outcome {
            verdict: Verdict::Pass,
        });
    }
    let mut settings = match &args.config {
        Some(path) => settings::read(path).map_err(RunError::Usage)?,
        None => Settings::default(),
    };
    for assignment in &args.set {
        settings::set(&mut settings, assignment).map_err(RunError::Usage)?;
    }
    let args = &apply_settings(args, &settings.run, explicit)?;
    if let Some(points) = args.tsne_points {
        settings.data.tsne_points = points;
    }
    let settings = &settings;
    let started = Instant::now();
    catch_interrupts();
    let steps = choose_steps(args.steps.as_deref())?;
    let injected = check_faults(&args.inject)?;
    let baseline = match &args.baseline {
        Some(path) => Some(baseline::read(path).map_err(RunError::Usage)?),
        None => None,
    };
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

    // Everything this run writes goes to a staging folder first; only a run that completes moves
    // it into place, so a failed or interrupted run leaves the previous report as it was.
    std::fs::create_dir_all(&args.out).map_err(|source| RunError::Write {
        path: args.out.clone(),
        source,
    })?;
    let staging = args.out.join(PARTIAL_DIR);
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(|source| RunError::Write {
            path: staging.clone(),
            source,
        })?;
    }
    std::fs::create_dir_all(&staging).map_err(|source| RunError::Write {
        path: staging.clone(),
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
            interrupted: None,
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
        settings,
        out: &staging,
        choice: &choice,
        options: &options,
        kind,
        run_model: &run_model,
        train: &splits.train,
        eval: &eval,
        normalization: &normalization,
        device: device.clone().autodiff(),
        training: OnceCell::new(),
    };
    let mut failure = None;
    for &step in &steps {
        if interrupted() {
            break;
        }
        let step_started = Instant::now();
        match run_step(step, &context) {
            Ok(mut step_report) => {
                step_report.seconds = step_started.elapsed().as_secs_f64();
                report.push(step_report);
            }
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    if let Some(baseline) = &baseline {
        baseline::compare(&mut report, baseline, &settings.baseline);
    }
    report.run.seconds = started.elapsed().as_secs_f64();
    let complete = failure.is_none() && !interrupted();
    if !complete {
        // What the run had, beside the previous report, which stays as it was.
        report.run.interrupted = Some(if interrupted() {
            "interrupted (Ctrl-C)".to_string()
        } else {
            failure.as_ref().map(|e| e.to_string()).unwrap_or_default()
        });
        let written = write_report(&report, &staging);
        say!(
            "the run did not complete; what it had is in {}; {} is left as it was",
            staging.display(),
            args.out.join("report.json").display()
        );
        written?;
        return match failure {
            Some(e) => Err(e),
            None => Err(RunError::Interrupted),
        };
    }
    write_report(&report, &staging)?;
    publish(&staging, &args.out)?;
    print_summary(&report, &args.out.join("report.json"));
    Ok(Outcome {
        verdict: report.verdict,
    })
}

/// Writes one of `report`'s files at `rel` under `out` (its folder made first, the file written
/// atomically) and lists it among the report's artifacts.
pub(crate) fn write_artifact(
    out: &Path,
    report: &mut StepReport,
    rel: &str,
    bytes: &[u8],
) -> Result<(), RunError> {
    let path = out.join(rel);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| RunError::Write {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    model_core::write_atomic(&path, bytes).map_err(|source| RunError::Write { path, source })?;
    report.artifacts.push(rel.to_string());
    Ok(())
}

/// The staging folder, inside the report folder.
pub const PARTIAL_DIR: &str = "partial";

/// Writes `report.json` and `index.html` into `dir`, atomically each.
fn write_report(report: &Report, dir: &Path) -> Result<(), RunError> {
    let path = dir.join("report.json");
    report.write(&path).map_err(|source| RunError::Write {
        path: path.clone(),
        source,
    })?;
    let path = dir.join("index.html");
    let page = html::render(report, dir);
    model_core::write_atomic(&path, page.as_bytes())
        .map_err(|source| RunError::Write { path, source })
}

/// Moves a completed run's files from `staging` into `out`: the pictures first, `report.json` and
/// `index.html` last, each by a rename, then removes the staging folder.
fn publish(staging: &Path, out: &Path) -> Result<(), RunError> {
    fn files(dir: &Path, into: &mut Vec<PathBuf>) -> std::io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.is_dir() {
                files(&path, into)?;
            } else {
                into.push(path);
            }
        }
        Ok(())
    }
    let fail = |path: &Path| {
        let path = path.to_path_buf();
        move |source| RunError::Write { path, source }
    };
    let mut all = Vec::new();
    files(staging, &mut all).map_err(fail(staging))?;
    let last = |p: &PathBuf| {
        p.parent() == Some(staging)
            && p.file_name()
                .is_some_and(|n| n == "report.json" || n == "index.html")
    };
    all.sort_by_key(|p| {
        (
            last(p),
            p.file_name() == Some(std::ffi::OsStr::new("index.html")),
        )
    });
    for from in all {
        let rel = from
            .strip_prefix(staging)
            .expect("under the staging folder");
        let to = out.join(rel);
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).map_err(fail(parent))?;
        }
        std::fs::rename(&from, &to).map_err(fail(&to))?;
    }
    std::fs::remove_dir_all(staging).map_err(fail(staging))
}

/// `args` with the `[run]` keys of the settings file applied where no flag was given.
fn apply_settings(
    args: &Args,
    file: &settings::RunSettings,
    explicit: &dyn Fn(&str) -> bool,
) -> Result<Args, RunError> {
    let mut args = args.clone();
    let bad = |key: &str, e: String| RunError::Usage(format!("--config [run] {key}: {e}"));
    macro_rules! take {
        ($field:ident, $convert:expr) => {
            if !explicit(stringify!($field))
                && let Some(value) = &file.$field
            {
                #[allow(clippy::redundant_closure_call)]
                let converted = ($convert)(value).map_err(|e| bad(stringify!($field), e))?;
                args.$field = converted;
            }
        };
    }
    take!(steps, |v: &Vec<String>| v
        .iter()
        .map(|s| s.parse::<Step>())
        .collect::<Result<Vec<_>, _>>()
        .map(Some));
    take!(dataset, |v: &String| Ok::<_, String>(v.clone()));
    take!(out, |v: &PathBuf| Ok::<_, String>(v.clone()));
    take!(seed, |v: &u64| Ok::<_, String>(*v));
    take!(inject, |v: &Vec<String>| Ok::<_, String>(v.clone()));
    take!(loading, |v: &String| Loading::from_str(v, true));
    take!(model, |v: &String| v.parse::<ModelKind>().map(Some));
    take!(weights, |v: &PathBuf| Ok::<_, String>(Some(v.clone())));
    take!(device, |v: &String| v.parse::<DeviceChoice>());
    take!(iterations, |v: &u64| if *v >= 1 {
        Ok(*v)
    } else {
        Err("must be at least 1".to_string())
    });
    take!(normalization, |v: &String| NormalizationChoice::from_str(
        v, true
    ));
    take!(eval_samples, |v: &usize| Ok::<_, String>(Some(*v)));
    take!(tsne_points, |v: &usize| Ok::<_, String>(Some(*v)));
    take!(baseline, |v: &PathBuf| Ok::<_, String>(Some(v.clone())));
    Ok(args)
}

/// What every step gets from the frame.
pub(crate) struct StepContext<'a> {
    pub args: &'a Args,
    pub settings: &'a Settings,
    /// Where the step writes its files (the run's staging folder; artifact paths are relative
    /// to it).
    pub out: &'a Path,
    pub choice: &'a DatasetChoice,
    pub options: &'a LoadOptions,
    pub kind: ModelKind,
    pub run_model: &'a model::RunModel,
    pub train: &'a model_core::Dataset,
    pub eval: &'a model_core::Dataset,
    pub normalization: &'a Normalization,
    /// The run's device, with autodiff.
    pub device: burn::prelude::Device,
    /// The shared training run, trained by the first step that asks for it.
    pub training: OnceCell<TrainingRun>,
}

impl StepContext<'_> {
    /// The shared training run (healthy: no gradients-step fault), trained on first use.
    pub fn training(&self) -> Result<&TrainingRun, RunError> {
        if let Some(run) = self.training.get() {
            return Ok(run);
        }
        let slow = timings_step::slow_layer(&self.args.inject)?;
        let run = training::train(
            self,
            &gradients_step::Faults::default(),
            slow.as_deref(),
            &self.settings.gradients,
        )?;
        Ok(self.training.get_or_init(|| run))
    }
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
                cx.out,
            )
        }
        Step::Data => data_step::run(cx),
        Step::Timings => timings_step::run(cx),
        Step::Gradients => gradients_step::run(cx),
        Step::Results => results_step::run(cx),
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

/// An `--inject` spec, `NAME` or `NAME=VALUE`, as its name and value.
pub(crate) fn fault_parts(spec: &str) -> (&str, Option<&str>) {
    spec.split_once('=')
        .map_or((spec, None), |(name, value)| (name, Some(value)))
}

fn check_faults(inject: &[String]) -> Result<Vec<String>, RunError> {
    for spec in inject {
        let (name, _) = fault_parts(spec);
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
        say!("{:<10} {:<8} no step ran; the data loaded", "-", "-");
    }
    for step in &report.steps {
        say!(
            "{:<10} {:<8} {}",
            step.step.as_str(),
            step.verdict.as_str(),
            html::reason(step)
        );
    }
    say!(
        "verdict: {} ({} s); report: {} and {}",
        report.verdict,
        format_args!("{:.1}", report.run.seconds),
        path.display(),
        path.with_file_name("index.html").display()
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
