//! Step 3 of the checklist, **check the timings**.
//!
//! Profiles training iterations of any model that routes its layers through `model-core`'s
//! [`Tap`](model_core::tap::Tap): per layer (the data layer first) forward and backward time as
//! mean, median and p95 and share of the iteration, the optimizer step as its own row, the
//! untraced remainder (so the rows add up to the measured iteration), and throughput. Names the
//! bottlenecks (layers ranked by share; the data layer judged with the TensorFlow profiler's
//! input-bound thresholds, 5% warn and 20% fail), compares the loading strategies on the user's
//! own dataset with the time saved extrapolated over many iterations, and writes a Chrome
//! trace-event file (Perfetto, chrome://tracing) and an SVG bar chart.

mod output;

use std::time::Instant;

use model_core::models::Classifier;
use model_core::tap::LayerTrace;
use model_core::train::{StepOutcome, TrainError, Trainer, Unobserved};
use model_core::{Batcher, Dataset, Finding, LoadStrategy, Verdict};
use serde::{Deserialize, Serialize};

pub use output::{bar_chart_svg, chrome_trace};

/// How to profile and judge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileConfig {
    /// Iterations run before timing (kernel compilation, caches, allocator).
    pub warmup: usize,
    /// Timed iterations.
    pub iterations: usize,
    /// The data layer's share of the iteration at which the verdict is Warn (TensorFlow's 5%).
    pub data_warn_share: f64,
    /// ... and Fail (input-bound, TensorFlow's 20%).
    pub data_fail_share: f64,
    /// A single layer taking this share of the iteration or more is a Warn: one layer dominates
    /// (LeNet's slowest layer, conv2, takes about 40%; ResNet-20's and AlexNet's far less).
    pub bottleneck_warn_share: f64,
    /// ... as is a layer taking at least half that share and this many times the runner-up's
    /// (LeNet's conv2 is about 1.4x conv1): a ratio holds when the machine is loaded, a share
    /// less so.
    pub bottleneck_warn_ratio: f64,
}

impl Default for ProfileConfig {
    fn default() -> Self {
        ProfileConfig {
            warmup: 3,
            iterations: 20,
            data_warn_share: 0.05,
            data_fail_share: 0.20,
            bottleneck_warn_share: 0.60,
            bottleneck_warn_ratio: 3.0,
        }
    }
}

/// Mean, median and 95th percentile of a series of durations, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub mean_ms: f64,
    pub median_ms: f64,
    pub p95_ms: f64,
}

impl Summary {
    pub fn of_seconds(values: &[f64]) -> Self {
        if values.is_empty() {
            return Summary::default();
        }
        let mut v: Vec<f64> = values.iter().map(|s| s * 1e3).collect();
        v.sort_by(f64::total_cmp);
        let at = |q: f64| v[((q * (v.len() - 1) as f64).round() as usize).min(v.len() - 1)];
        Summary {
            mean_ms: v.iter().sum::<f64>() / v.len() as f64,
            median_ms: at(0.5),
            p95_ms: at(0.95),
        }
    }
}

/// One row of the per-layer table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerTiming {
    pub name: String,
    pub kind: String,
    pub forward: Summary,
    pub backward: Summary,
    /// Mean (forward + backward) over the mean iteration.
    pub share: f64,
    pub output_shape: Vec<usize>,
    /// Bytes of the layer's output (f32).
    pub activation_bytes: usize,
    /// Bytes of the layer's trainable parameters (f32).
    pub param_bytes: usize,
}

/// One profiled iteration, as the trace file shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IterationRecord {
    /// Seconds from the start of profiling.
    pub start: f64,
    pub wall_seconds: f64,
    pub optimizer_seconds: f64,
    pub trace: LayerTrace,
}

/// The profile of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    /// The data layer first, then the model's layers in forward order.
    pub layers: Vec<LayerTiming>,
    pub optimizer: Summary,
    pub iteration: Summary,
    /// Wall time not covered by any row (bookkeeping between the timed windows).
    pub untraced: Summary,
    pub batch_size: usize,
    pub samples_per_second: f64,
    pub iterations: usize,
    /// Peak resident memory of the process so far (Linux `VmHWM`), when known.
    #[serde(default)]
    pub peak_rss_bytes: Option<u64>,
}

/// The process's peak resident memory (`VmHWM` in `/proc/self/status`), on Linux.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

impl Profile {
    /// Summarises `records` (batches of `batch_size`).
    pub fn from_records(records: &[IterationRecord], batch_size: usize) -> Profile {
        let Some(first) = records.first() else {
            return Profile {
                layers: Vec::new(),
                optimizer: Summary::default(),
                iteration: Summary::default(),
                untraced: Summary::default(),
                batch_size,
                samples_per_second: 0.0,
                iterations: 0,
                peak_rss_bytes: peak_rss_bytes(),
            };
        };
        let walls: Vec<f64> = records.iter().map(|r| r.wall_seconds).collect();
        let mean_wall = walls.iter().sum::<f64>() / walls.len() as f64;
        let layers = first
            .trace
            .layers
            .iter()
            .enumerate()
            .map(|(i, layer)| {
                let fwd: Vec<f64> = records
                    .iter()
                    .filter_map(|r| r.trace.layers.get(i))
                    .map(|l| l.forward_seconds)
                    .collect();
                let bwd: Vec<f64> = records
                    .iter()
                    .filter_map(|r| r.trace.layers.get(i))
                    .map(|l| l.backward_seconds)
                    .collect();
                let total =
                    (fwd.iter().sum::<f64>() + bwd.iter().sum::<f64>()) / records.len() as f64;
                LayerTiming {
                    name: layer.name.clone(),
                    kind: layer.kind.clone(),
                    forward: Summary::of_seconds(&fwd),
                    backward: Summary::of_seconds(&bwd),
                    share: total / mean_wall.max(1e-12),
                    activation_bytes: 4 * layer.output_shape.iter().product::<usize>(),
                    param_bytes: 4 * first
                        .trace
                        .params
                        .iter()
                        .filter(|p| p.layer.as_deref() == Some(layer.name.as_str()))
                        .map(|p| p.shape.iter().product::<usize>())
                        .sum::<usize>(),
                    output_shape: layer.output_shape.clone(),
                }
            })
            .collect();
        let untraced: Vec<f64> = records
            .iter()
            .map(|r| (r.wall_seconds - r.trace.total_seconds() - r.optimizer_seconds).max(0.0))
            .collect();
        Profile {
            layers,
            optimizer: Summary::of_seconds(
                &records
                    .iter()
                    .map(|r| r.optimizer_seconds)
                    .collect::<Vec<_>>(),
            ),
            iteration: Summary::of_seconds(&walls),
            untraced: Summary::of_seconds(&untraced),
            batch_size,
            samples_per_second: batch_size as f64 / mean_wall.max(1e-12),
            iterations: records.len(),
            peak_rss_bytes: peak_rss_bytes(),
        }
    }

    /// The data layer's row (kind `Data`), if traced.
    pub fn data_layer(&self) -> Option<&LayerTiming> {
        self.layers.iter().find(|l| l.kind == "Data")
    }

    /// Layers by share, largest first.
    pub fn ranked(&self) -> Vec<&LayerTiming> {
        let mut ranked: Vec<&LayerTiming> = self.layers.iter().collect();
        ranked.sort_by(|a, b| b.share.total_cmp(&a.share));
        ranked
    }

    /// Mean forward and backward milliseconds summed over the model's layers (data excluded).
    pub fn forward_backward_ms(&self) -> (f64, f64) {
        self.layers
            .iter()
            .filter(|l| l.kind != "Data")
            .fold((0.0, 0.0), |(f, b), l| {
                (f + l.forward.mean_ms, b + l.backward.mean_ms)
            })
    }

    /// Findings: the data-layer verdict and the top bottleneck.
    pub fn findings(&self, config: &ProfileConfig) -> Vec<Finding> {
        let mut findings = Vec::new();
        if let Some(data) = self.data_layer() {
            let share = data.share;
            let verdict = if share >= config.data_fail_share {
                Verdict::Fail
            } else if share >= config.data_warn_share {
                Verdict::Warn
            } else {
                Verdict::Pass
            };
            let threshold = if verdict == Verdict::Fail {
                config.data_fail_share
            } else {
                config.data_warn_share
            };
            findings.push(Finding {
                check: "data_layer_share".into(),
                verdict,
                subject: data.name.clone(),
                measured: share,
                threshold,
                message: format!(
                    "the data layer takes {:.1}% of the iteration ({:.3} ms of {:.3} ms){}",
                    100.0 * share,
                    data.forward.mean_ms,
                    self.iteration.mean_ms,
                    if verdict == Verdict::Fail { ": input-bound" } else { "" }
                ),
                remedy: if verdict == Verdict::Pass {
                    String::new()
                } else {
                    "load the dataset into memory first (LoadAll), or cache decoded samples, or read batches ahead in parallel".into()
                },
            });
        }
        let ranked = self.ranked();
        let mut layers = ranked.iter().filter(|l| l.kind != "Data");
        if let Some(top) = layers.next() {
            let next = layers.next();
            let dominates = top.share >= config.bottleneck_warn_share
                || (top.share >= config.bottleneck_warn_share / 2.0
                    && next.is_some_and(|n| top.share >= config.bottleneck_warn_ratio * n.share));
            findings.push(Finding {
                check: "bottleneck".into(),
                verdict: if dominates { Verdict::Warn } else { Verdict::Pass },
                subject: top.name.clone(),
                measured: top.share,
                threshold: config.bottleneck_warn_share,
                message: format!(
                    "slowest layer: {} ({}) with {:.1}% of the iteration (forward {:.3} ms, backward {:.3} ms){}",
                    top.name,
                    top.kind,
                    100.0 * top.share,
                    top.forward.mean_ms,
                    top.backward.mean_ms,
                    match (dominates, next) {
                        (true, Some(n)) => format!(
                            "; {:.1}x the next slowest, {} ({:.1}%)",
                            top.share / n.share.max(1e-12),
                            n.name,
                            100.0 * n.share
                        ),
                        _ => String::new(),
                    }
                ),
                remedy: if dominates {
                    format!(
                        "{} alone takes most of the iteration: check it for work its size does not explain (a host copy or sleep, a device sync, a wrong layout or kernel), or shrink it",
                        top.name
                    )
                } else {
                    String::new()
                },
            });
        }
        findings
    }
}

/// Trains `trainer` (whose config should have the tap on at `Timing`) for `config.warmup`
/// untimed and `config.iterations` timed iterations over `dataset`, recording every iteration.
pub fn profile<M: Classifier>(
    trainer: &mut Trainer<M>,
    dataset: &Dataset,
    config: &ProfileConfig,
) -> Result<(Profile, Vec<IterationRecord>), TrainError> {
    let batcher = trainer.batcher().clone();
    let plan = batcher.plan(dataset.len(), 0);
    if plan.is_empty() {
        return Err(TrainError::Config {
            what: format!("dataset `{}` is empty", dataset.name()),
        });
    }
    let mut records = Vec::with_capacity(config.iterations);
    let origin = Instant::now();
    for i in 0..config.warmup + config.iterations {
        let started = Instant::now();
        let batch = batcher.assemble(dataset, &plan[i % plan.len()])?;
        let data_seconds = started.elapsed().as_secs_f64();
        let (
            StepOutcome {
                trace,
                optimizer_seconds,
                ..
            },
            _,
        ) = trainer.step(&batch, data_seconds, 0, &mut Unobserved)?;
        let wall_seconds = started.elapsed().as_secs_f64();
        if i >= config.warmup
            && let Some(trace) = trace
        {
            records.push(IterationRecord {
                start: started.duration_since(origin).as_secs_f64(),
                wall_seconds,
                optimizer_seconds,
                trace,
            });
        }
    }
    let profile = Profile::from_records(&records, batcher.batch_size);
    Ok((profile, records))
}

/// Per-batch time of each loading strategy on one dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StrategyComparison {
    pub batch_size: usize,
    pub batches: usize,
    pub load_all_batch_ms: f64,
    pub on_demand_batch_ms: f64,
    pub cached_batch_ms: f64,
    /// Capacity of the cached mode (samples).
    pub cache_capacity: usize,
    /// On demand over load-all.
    pub speedup: f64,
    /// Seconds spent decoding everything for `LoadAll`, once.
    pub load_all_setup_seconds: f64,
    /// Bytes `LoadAll` keeps in memory.
    pub load_all_bytes: usize,
}

impl StrategyComparison {
    /// Hours saved by `LoadAll` against on-demand loading over `iterations` iterations (after
    /// paying its one-off decoding).
    pub fn hours_saved(&self, iterations: u64) -> f64 {
        ((self.on_demand_batch_ms - self.load_all_batch_ms) * iterations as f64 / 1e3
            - self.load_all_setup_seconds)
            / 3600.0
    }
}

/// Assembles `batches` shuffled batches of `dataset` under each strategy and compares them.
/// `dataset` should be on demand (as a reader opens it with `OnDemandNoCache`).
pub fn compare_strategies(
    dataset: &Dataset,
    batcher: &Batcher,
    batches: usize,
    cache_capacity: usize,
) -> Result<StrategyComparison, model_core::DataError> {
    let plan = batcher.plan(dataset.len(), 0);
    let batches = batches.clamp(1, plan.len().max(1));
    let time_batches = |d: &Dataset| -> Result<f64, model_core::DataError> {
        let started = Instant::now();
        for items in plan.iter().take(batches) {
            let batch = batcher.assemble(d, items)?;
            std::hint::black_box(batcher.normalize(&batch)?);
        }
        Ok(started.elapsed().as_secs_f64() * 1e3 / batches as f64)
    };
    let on_demand = dataset.with_strategy(LoadStrategy::OnDemandNoCache)?;
    let on_demand_batch_ms = time_batches(&on_demand)?;
    let cached = dataset.with_strategy(LoadStrategy::OnDemandCached {
        capacity: cache_capacity,
    })?;
    let cached_batch_ms = time_batches(&cached)?;
    let setup = Instant::now();
    let all = dataset.with_strategy(LoadStrategy::LoadAll)?;
    let load_all_setup_seconds = setup.elapsed().as_secs_f64();
    let load_all_batch_ms = time_batches(&all)?;
    Ok(StrategyComparison {
        batch_size: batcher.batch_size,
        batches,
        load_all_batch_ms,
        on_demand_batch_ms,
        cached_batch_ms,
        cache_capacity,
        speedup: on_demand_batch_ms / load_all_batch_ms.max(1e-9),
        load_all_setup_seconds,
        load_all_bytes: all.source().resident_bytes(),
    })
}

/// The step's report: the metrics the checklist carries (`iteration_ms`, `data_layer_ms`,
/// `data_layer_share`, `forward_ms`, `backward_ms`, `optimizer_ms`, `untraced_ms`,
/// `samples_per_second`, and with a comparison `load_all_batch_ms`, `on_demand_batch_ms`,
/// `cached_batch_ms`, `hours_saved_500k`), the findings, and the per-layer rows in `details`.
pub fn step_report(
    profile: &Profile,
    comparison: Option<&StrategyComparison>,
    config: &ProfileConfig,
) -> model_core::StepReport {
    let mut report = model_core::StepReport::new(model_core::Step::Timings);
    let (forward, backward) = profile.forward_backward_ms();
    let data = profile.data_layer();
    report.metric("iteration_ms", profile.iteration.mean_ms);
    report.metric("data_layer_ms", data.map_or(0.0, |d| d.forward.mean_ms));
    report.metric("data_layer_share", data.map_or(0.0, |d| d.share));
    report.metric("forward_ms", forward);
    report.metric("backward_ms", backward);
    report.metric("optimizer_ms", profile.optimizer.mean_ms);
    report.metric("untraced_ms", profile.untraced.mean_ms);
    report.metric("samples_per_second", profile.samples_per_second);
    report.metric("iterations", profile.iterations as f64);
    if let Some(bytes) = profile.peak_rss_bytes {
        report.metric("peak_rss_mib", bytes as f64 / (1024.0 * 1024.0));
    }
    if let Some(c) = comparison {
        report.metric("load_all_batch_ms", c.load_all_batch_ms);
        report.metric("on_demand_batch_ms", c.on_demand_batch_ms);
        report.metric("cached_batch_ms", c.cached_batch_ms);
        report.metric("hours_saved_500k", c.hours_saved(500_000));
        report.metric("load_all_bytes", c.load_all_bytes as f64);
        report.push(Finding {
            check: "loading_strategies".into(),
            verdict: Verdict::Pass,
            subject: "data".into(),
            measured: c.speedup,
            threshold: 1.0,
            message: format!(
                "a batch of {} takes {:.3} ms on demand, {:.3} ms cached ({} samples), {:.3} ms loaded in memory ({:.1}x); over 500,000 iterations loading everything first saves {:.1} hours and needs {:.1} MiB",
                c.batch_size,
                c.on_demand_batch_ms,
                c.cached_batch_ms,
                c.cache_capacity,
                c.load_all_batch_ms,
                c.speedup,
                c.hours_saved(500_000),
                c.load_all_bytes as f64 / (1024.0 * 1024.0)
            ),
            remedy: String::new(),
        });
    }
    for finding in profile.findings(config) {
        report.push(finding);
    }
    report.details = serde_json::json!({
        "layers": profile.layers,
        "optimizer": profile.optimizer,
        "iteration": profile.iteration,
        "untraced": profile.untraced,
        "ranked": profile.ranked().iter().map(|l| serde_json::json!({"name": l.name, "share": l.share})).collect::<Vec<_>>(),
        "strategies": comparison,
    });
    report
}
