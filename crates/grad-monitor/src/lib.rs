//! Step 4 of the checklist, **check the gradients**.
//!
//! Watches a training run through the trainer's hook, at the cost of the Tap's statistics only:
//! per layer the ranges of the top blob's `data` and `diff`, per parameter (weight and bias
//! apart) its value and gradient ranges and the ratio of its update (effective learning rate
//! times gradient) to its value. Turns them into verdicts that name the layer, the blob or the
//! parameter, with a remedy computed from the numbers:
//!
//! - `nonfinite`: the first NaN or Inf, where it starts (the earliest layer in forward order for
//!   `data`, the latest for `diff`), with its iteration;
//! - `exploding`: a gradient range growing by orders of magnitude over the watched window, before
//!   any NaN;
//! - `vanishing`: a parameter whose update is orders of magnitude below its value while the loss
//!   has not converged;
//! - `dead-relu`: a ReLU layer whose output is entirely zero;
//! - `imbalance`: a parameter whose update is a large fraction of its value (the seed's conv1 bias).

use model_core::tap::{BlobStats, LayerTrace};
use model_core::train::{Control, IterationReport, LrMult, TrainHook};
use model_core::{Finding, Verdict};
use serde::{Deserialize, Serialize};

/// Update ratios (imbalance, vanishing) are judged only over at least this many healthy watched
/// iterations.
pub const MIN_ITERATIONS_FOR_RATIOS: usize = 20;

/// Thresholds, with their defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MonitorConfig {
    /// Watch every `every`-th iteration.
    pub every: usize,
    /// Stop the run at the first NaN or Inf.
    pub stop_at_nonfinite: bool,
    /// Growth of a gradient range (largest |diff| of a layer) over the watched window that counts
    /// as exploding (100 = two orders of magnitude).
    pub explode_growth: f64,
    /// Update-to-value ratio above which a parameter is imbalanced (default 0.5: one step moves
    /// the parameter by half its size).
    pub imbalance_ratio: f64,
    /// Update-to-value ratio below which a parameter is vanishing (default 1e-6).
    pub vanish_ratio: f64,
    /// A bias whose update ratio is more than this many times its layer's weight's is imbalanced
    /// too (default 50; a healthy LeNet run measures up to about 16).
    pub imbalance_vs_weight: f64,
    /// The ratio a remedy aims at (default 1e-3, the usual rule of thumb).
    pub target_ratio: f64,
    /// The loss has converged when it is below this fraction of the first loss.
    pub converged_loss_fraction: f64,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig {
            every: 1,
            stop_at_nonfinite: false,
            explode_growth: 100.0,
            imbalance_ratio: 0.5,
            imbalance_vs_weight: 50.0,
            vanish_ratio: 1e-6,
            target_ratio: 1e-3,
            converged_loss_fraction: 0.1,
        }
    }
}

/// One parameter at one iteration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParamSample {
    pub name: String,
    pub layer: Option<String>,
    pub value: BlobStats,
    pub grad: BlobStats,
    /// Base learning rate times this parameter's multiplier.
    pub lr: f64,
    /// `lr * mean|grad| / mean|value|`.
    pub update_ratio: f64,
}

/// One layer at one iteration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerSample {
    pub name: String,
    pub kind: String,
    pub data: Option<BlobStats>,
    pub diff: Option<BlobStats>,
}

/// One watched iteration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IterationSample {
    pub iteration: usize,
    pub loss: f32,
    pub layers: Vec<LayerSample>,
    pub params: Vec<ParamSample>,
}

/// Watches a training run; use it as the trainer's hook (the tap at full detail).
#[derive(Debug, Clone)]
pub struct GradMonitor {
    pub config: MonitorConfig,
    lr_mults: Vec<(regex_lite::Regex, f64)>,
    pub samples: Vec<IterationSample>,
}

fn largest(stats: &BlobStats) -> f64 {
    (stats.min.abs().max(stats.max.abs())) as f64
}

impl GradMonitor {
    /// A monitor for a run whose learning-rate multipliers are `lr_mults` (as in the trainer's
    /// config; an invalid pattern is ignored).
    pub fn new(config: MonitorConfig, lr_mults: &[LrMult]) -> Self {
        let lr_mults = lr_mults
            .iter()
            .filter_map(|m| regex_lite::Regex::new(&m.pattern).ok().map(|r| (r, m.mult)))
            .collect();
        GradMonitor {
            config,
            lr_mults,
            samples: Vec::new(),
        }
    }

    fn mult(&self, name: &str) -> f64 {
        self.lr_mults
            .iter()
            .filter(|(r, _)| r.is_match(name))
            .map(|(_, m)| *m)
            .next_back()
            .unwrap_or(1.0)
    }

    /// Records one iteration's trace.
    pub fn observe(&mut self, iteration: usize, loss: f32, lr: f64, trace: &LayerTrace) {
        let layers = trace
            .layers
            .iter()
            .map(|l| LayerSample {
                name: l.name.clone(),
                kind: l.kind.clone(),
                data: l.data,
                diff: l.diff,
            })
            .collect();
        let params = trace
            .params
            .iter()
            .filter_map(|p| {
                let (value, grad) = (p.value?, p.grad?);
                let lr = lr * self.mult(&p.name);
                let update_ratio = lr * grad.mean_abs as f64 / (value.mean_abs as f64).max(1e-12);
                Some(ParamSample {
                    name: p.name.clone(),
                    layer: p.layer.clone(),
                    value,
                    grad,
                    lr,
                    update_ratio,
                })
            })
            .collect();
        self.samples.push(IterationSample {
            iteration,
            loss,
            layers,
            params,
        });
    }

    /// The first watched iteration holding a NaN or Inf anywhere.
    pub fn first_nonfinite(&self) -> Option<&IterationSample> {
        self.samples.iter().find(|s| {
            !s.loss.is_finite()
                || s.layers.iter().any(|l| {
                    l.data.is_some_and(|d| !d.is_finite()) || l.diff.is_some_and(|d| !d.is_finite())
                })
                || s.params
                    .iter()
                    .any(|p| !p.value.is_finite() || !p.grad.is_finite())
        })
    }

    /// The earliest explosion in `healthy` (the iterations before any NaN): the layer whose
    /// largest |diff| first grows by `explode_growth` over its largest in the first quarter, the
    /// growth and the iteration (on a tie, the earlier layer in forward order).
    fn first_explosion(&self, healthy: &[&IterationSample]) -> Option<(String, f64, usize)> {
        if healthy.len() < 4 {
            return None;
        }
        let head = (healthy.len() / 4).max(1);
        let mut first: Option<(String, f64, usize)> = None;
        for (i, layer) in healthy[0].layers.iter().enumerate() {
            let early: f64 = healthy[..head]
                .iter()
                .filter_map(|s| s.layers.get(i)?.diff)
                .map(|d| largest(&d))
                .fold(0.0, f64::max);
            if early <= 0.0 {
                continue;
            }
            let crossing = healthy[head..].iter().find_map(|s| {
                let growth = largest(&s.layers.get(i)?.diff?) / early;
                (growth >= self.config.explode_growth).then_some((growth, s.iteration))
            });
            if let Some((growth, iteration)) = crossing
                && first.as_ref().is_none_or(|f| iteration < f.2)
            {
                first = Some((layer.name.clone(), growth, iteration));
            }
        }
        first
    }

    /// The verdicts, each with its subject and remedy.
    pub fn findings(&self) -> Vec<Finding> {
        let c = &self.config;
        let mut findings = Vec::new();
        let base_lr = self
            .samples
            .first()
            .and_then(|s| s.params.first().map(|p| p.lr / self.mult(&p.name)))
            .unwrap_or(0.0);
        let first_bad = self.first_nonfinite().map(|s| s.iteration);
        if let Some(sample) = self.first_nonfinite() {
            let data_layer = sample
                .layers
                .iter()
                .find(|l| l.data.is_some_and(|d| !d.is_finite()));
            let diff_layer = sample
                .layers
                .iter()
                .rev()
                .find(|l| l.diff.is_some_and(|d| !d.is_finite()));
            let param = sample.params.iter().find(|p| !p.value.is_finite());
            let (subject, blob) = match (param, data_layer, diff_layer) {
                (Some(p), _, _) => (
                    p.layer.clone().unwrap_or_else(|| p.name.clone()),
                    format!("the values of {}", p.name),
                ),
                (None, Some(l), _) => (l.name.clone(), "data".to_string()),
                (None, None, Some(l)) => (l.name.clone(), "diff".to_string()),
                _ => ("loss".to_string(), "loss".to_string()),
            };
            findings.push(Finding {
                check: "nonfinite".into(),
                verdict: Verdict::Fail,
                subject,
                measured: sample.iteration as f64,
                threshold: 0.0,
                message: format!("the first NaN/Inf appears at iteration {} in {blob}", sample.iteration),
                remedy: format!(
                    "lower the learning rate (to {:.2e}) and clip gradients; if the values of a parameter are NaN, re-initialise or re-load it",
                    base_lr / 10.0
                ),
            });
        }
        // Exploding: the largest |diff| of a layer grows by `explode_growth` over the watched
        // iterations before the first NaN.
        let healthy: Vec<&IterationSample> = self
            .samples
            .iter()
            .filter(|s| first_bad.is_none_or(|b| s.iteration < b))
            .collect();
        let explosion = self.first_explosion(&healthy);
        if let Some((layer, growth, iteration)) = &explosion {
            findings.push(Finding {
                check: "exploding".into(),
                verdict: Verdict::Fail,
                subject: layer.clone(),
                measured: *growth,
                threshold: c.explode_growth,
                message: format!("{layer}'s diff grew {growth:.0}x by iteration {iteration}"),
                remedy: format!(
                    "lower the learning rate to {:.2e} or clip gradients by norm",
                    base_lr / growth.sqrt()
                ),
            });
        }
        // Per parameter, over the second half of the iterations before anything blew up (after
        // an explosion every ratio only echoes it).
        let blew_up = explosion.map(|(_, _, iteration)| iteration).or(first_bad);
        let healthy: Vec<&IterationSample> = healthy
            .into_iter()
            .filter(|s| blew_up.is_none_or(|b| s.iteration < b))
            .collect();
        // Zero-initialised biases make every early update look huge: judge ratios only with at
        // least `MIN_ITERATIONS_FOR_RATIOS` healthy iterations, over their second half.
        let tail: &[&IterationSample] = if healthy.len() >= MIN_ITERATIONS_FOR_RATIOS {
            &healthy[healthy.len() / 2..]
        } else {
            &[]
        };
        let loss_first = self
            .samples
            .first()
            .map(|s| s.loss as f64)
            .unwrap_or(f64::NAN);
        let loss_last = tail.iter().map(|s| s.loss as f64).sum::<f64>() / tail.len().max(1) as f64;
        let converged = loss_last < c.converged_loss_fraction * loss_first;
        if let Some(last) = tail.last() {
            let medians: Vec<f64> = (0..last.params.len())
                .map(|k| {
                    let mut ratios: Vec<f64> = tail
                        .iter()
                        .filter_map(|s| s.params.get(k))
                        .map(|q| q.update_ratio)
                        .filter(|r| r.is_finite())
                        .collect();
                    ratios.sort_by(f64::total_cmp);
                    ratios.get(ratios.len() / 2).copied().unwrap_or(f64::NAN)
                })
                .collect();
            let ratio_of = |name: &str| {
                last.params
                    .iter()
                    .position(|q| q.name == name)
                    .map(|k| medians[k])
            };
            for (k, p) in last.params.iter().enumerate() {
                let ratio = medians[k];
                if !ratio.is_finite() {
                    continue;
                }
                let mult = self.mult(&p.name);
                let weight_ratio = p
                    .name
                    .strip_suffix(".bias")
                    .and_then(|layer| ratio_of(&format!("{layer}.weight")))
                    .filter(|r| *r > 0.0);
                let relative = weight_ratio.map(|w| ratio / w);
                if ratio > c.imbalance_ratio || relative.is_some_and(|r| r > c.imbalance_vs_weight)
                {
                    // Aim at the target ratio, or at ten times the layer's weight ratio for a bias.
                    let aim = weight_ratio.map_or(c.target_ratio * 10.0, |w| {
                        (10.0 * w).min(c.imbalance_ratio / 5.0)
                    });
                    let suggested = mult * aim / ratio;
                    let against = match (weight_ratio, relative) {
                        (Some(w), Some(r)) => format!(", {r:.0}x its weight's ({w:.1e})"),
                        _ => String::new(),
                    };
                    findings.push(Finding {
                        check: "imbalance".into(),
                        verdict: Verdict::Fail,
                        subject: p.name.clone(),
                        measured: ratio,
                        threshold: c.imbalance_ratio,
                        message: format!(
                            "{}: each update moves it by {:.3} of its size{against} (gradient up to {:.2e}, values up to {:.2e})",
                            p.name,
                            ratio,
                            largest(&p.grad),
                            largest(&p.value)
                        ),
                        remedy: format!("set {}'s learning-rate multiplier to {suggested:.3e} (now {mult})", p.name),
                    });
                } else if ratio < c.vanish_ratio && !converged {
                    findings.push(Finding {
                        check: "vanishing".into(),
                        verdict: Verdict::Warn,
                        subject: p.name.clone(),
                        measured: ratio,
                        threshold: c.vanish_ratio,
                        message: format!("{}: updates are {ratio:.1e} of its size while the loss has not converged", p.name),
                        remedy: format!(
                            "raise {}'s learning-rate multiplier to {:.1e}, or the loss weight, or use an activation that passes gradient (ReLU)",
                            p.name,
                            mult * c.target_ratio / ratio.max(1e-30)
                        ),
                    });
                }
            }
            for l in &last.layers {
                if l.kind.contains("ReLU") && l.data.is_some_and(|d| d.max == 0.0 && d.min == 0.0) {
                    findings.push(Finding {
                        check: "dead-relu".into(),
                        verdict: Verdict::Warn,
                        subject: l.name.clone(),
                        measured: 1.0,
                        threshold: 1.0,
                        message: format!("{}: every output of the ReLU is zero", l.name),
                        remedy:
                            "lower the learning rate, or initialise the biases slightly positive"
                                .into(),
                    });
                }
            }
        }
        findings
    }
}

impl<M> TrainHook<M> for GradMonitor {
    fn on_iteration(&mut self, report: &IterationReport<'_, M>) -> Control {
        if !report.iteration.is_multiple_of(self.config.every.max(1)) {
            return Control::Continue;
        }
        if let Some(trace) = report.trace {
            self.observe(report.iteration, report.loss, report.lr, trace);
        }
        if self.config.stop_at_nonfinite && self.first_nonfinite().is_some() {
            return Control::Stop;
        }
        Control::Continue
    }
}

/// The step's report: metrics `iterations_watched`, `loss_first`, `loss_last`,
/// `first_nonfinite_iteration` (-1 when none), the findings, and per-layer and per-parameter
/// ranges over the iterations in `details`.
pub fn step_report(monitor: &GradMonitor) -> model_core::StepReport {
    let mut report = model_core::StepReport::new(model_core::Step::Gradients);
    report.metric("iterations_watched", monitor.samples.len() as f64);
    report.metric(
        "loss_first",
        monitor.samples.first().map_or(f64::NAN, |s| s.loss as f64),
    );
    report.metric(
        "loss_last",
        monitor.samples.last().map_or(f64::NAN, |s| s.loss as f64),
    );
    report.metric(
        "first_nonfinite_iteration",
        monitor
            .first_nonfinite()
            .map_or(-1.0, |s| s.iteration as f64),
    );
    let findings = monitor.findings();
    if findings.is_empty() {
        report.push(Finding {
            check: "gradients".into(),
            verdict: Verdict::Pass,
            subject: "all layers".into(),
            measured: monitor.samples.len() as f64,
            threshold: 0.0,
            message: format!("{} iterations watched: no NaN/Inf, no explosion, no vanishing or imbalanced parameter", monitor.samples.len()),
            remedy: String::new(),
        });
    }
    for f in findings {
        report.push(f);
    }
    report.details = serde_json::json!({ "iterations": monitor.samples });
    report
}

/// Line plots (SVG) over the watched iterations, log scale: per layer the largest |data| and
/// largest |diff|; per parameter the mean |value| and mean |gradient|. NaN and Inf points are
/// drawn as red marks at the top of their panel.
pub fn range_plots_svg(monitor: &GradMonitor) -> String {
    type Series = (String, Vec<(usize, f64)>);
    let samples = &monitor.samples;
    let mut panels: Vec<(String, Vec<Series>)> = Vec::new();
    if let Some(first) = samples.first() {
        let layer_series = |pick: fn(&LayerSample) -> Option<BlobStats>| -> Vec<Series> {
            first
                .layers
                .iter()
                .enumerate()
                .map(|(i, l)| {
                    let points = samples
                        .iter()
                        .filter_map(|s| {
                            Some((
                                s.iteration,
                                s.layers.get(i).and_then(pick).map(|d| {
                                    if d.is_finite() {
                                        largest(&d)
                                    } else {
                                        f64::INFINITY
                                    }
                                })?,
                            ))
                        })
                        .collect();
                    (l.name.clone(), points)
                })
                .collect()
        };
        panels.push(("largest |data| per layer".into(), layer_series(|l| l.data)));
        panels.push(("largest |diff| per layer".into(), layer_series(|l| l.diff)));
        let param_series = |pick: fn(&ParamSample) -> BlobStats| -> Vec<Series> {
            first
                .params
                .iter()
                .enumerate()
                .map(|(k, p)| {
                    let points = samples
                        .iter()
                        .filter_map(|s| s.params.get(k))
                        .zip(samples.iter().map(|s| s.iteration))
                        .map(|(q, it)| {
                            let b = pick(q);
                            (
                                it,
                                if b.is_finite() {
                                    b.mean_abs as f64
                                } else {
                                    f64::INFINITY
                                },
                            )
                        })
                        .collect();
                    (p.name.clone(), points)
                })
                .collect()
        };
        panels.push((
            "mean |value| per parameter".into(),
            param_series(|p| p.value),
        ));
        panels.push((
            "mean |gradient| per parameter".into(),
            param_series(|p| p.grad),
        ));
    }
    let palette = [
        "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
        "#bcbd22", "#17becf",
    ];
    let (w, h, left, legend) = (520.0, 220.0, 60.0, 170.0);
    let total_h = panels.len() as f64 * (h + 40.0) + 20.0;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{total_h}\" font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n",
        left + w + legend
    );
    let last_it = samples.last().map_or(1, |s| s.iteration.max(1)) as f64;
    for (p, (title, series)) in panels.iter().enumerate() {
        let top = 20.0 + p as f64 * (h + 40.0);
        let finite: Vec<f64> = series
            .iter()
            .flat_map(|(_, pts)| pts.iter().map(|(_, v)| *v))
            .filter(|v| v.is_finite() && *v > 0.0)
            .collect();
        let lo = finite
            .iter()
            .cloned()
            .fold(f64::INFINITY, f64::min)
            .log10()
            .floor();
        let hi = finite
            .iter()
            .cloned()
            .fold(f64::NEG_INFINITY, f64::max)
            .log10()
            .ceil()
            .max(lo + 1.0);
        let (lo, hi) = if lo.is_finite() {
            (lo, hi)
        } else {
            (-1.0, 1.0)
        };
        let x = |it: usize| left + w * it as f64 / last_it;
        let y = |v: f64| top + h - h * ((v.log10() - lo) / (hi - lo)).clamp(0.0, 1.0);
        svg.push_str(&format!(
            "<text x=\"{left}\" y=\"{}\" font-size=\"13\">{title} (log scale, 1e{lo} to 1e{hi}) over iterations 0 to {last_it}</text>\n<rect x=\"{left}\" y=\"{top}\" width=\"{w}\" height=\"{h}\" fill=\"none\" stroke=\"#999\"/>\n",
            top - 5.0
        ));
        for (i, (name, pts)) in series.iter().enumerate() {
            let colour = palette[i % palette.len()];
            let path: Vec<String> = pts
                .iter()
                .filter(|(_, v)| v.is_finite() && *v > 0.0)
                .map(|(it, v)| format!("{:.1},{:.1}", x(*it), y(*v)))
                .collect();
            if !path.is_empty() {
                svg.push_str(&format!("<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.5\" points=\"{}\"/>\n", path.join(" ")));
            }
            for (it, _) in pts.iter().filter(|(_, v)| !v.is_finite()) {
                svg.push_str(&format!(
                    "<rect x=\"{:.1}\" y=\"{top}\" width=\"3\" height=\"8\" fill=\"red\"/>\n",
                    x(*it)
                ));
            }
            svg.push_str(&format!(
                "<text x=\"{}\" y=\"{}\" fill=\"{colour}\">{}</text>\n",
                left + w + 8.0,
                top + 12.0 + 13.0 * i as f64,
                name.replace('&', "&amp;").replace('<', "&lt;")
            ));
        }
    }
    svg.push_str("</svg>\n");
    svg
}
