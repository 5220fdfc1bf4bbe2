//! The checklist's step 4, `gradients`: train the run's model for `--iterations` with the tap at
//! full detail and `grad-monitor` watching; plant the step's faults on request.

use grad_monitor::{GradMonitor, MonitorConfig, step_report};
use model_core::StepReport;
use model_core::tap::TapDetail;
use model_core::train::{
    Control, IterationReport, OptimizerChoice, TrainConfig, TrainHook, Trainer,
};

use crate::checklist::{RunError, StepContext};
use crate::with_model;

/// The faults of this step, from `--inject`.
#[derive(Debug, Default, Clone)]
pub struct Faults {
    /// `lr-x100`: the learning rate times 100.
    pub lr_x100: bool,
    /// `nan=LAYER`: NaN written into LAYER's weights a third of the way through.
    pub nan: Option<String>,
    /// `bias-lr-mult=LAYER:FACTOR`: LAYER's bias learns FACTOR times faster.
    pub bias_lr_mult: Option<(String, f64)>,
}

impl Faults {
    pub fn from_injected(injected: &[String]) -> Result<Faults, RunError> {
        let mut faults = Faults::default();
        for spec in injected {
            let (name, value) = spec
                .split_once('=')
                .map_or((spec.as_str(), None), |(n, v)| (n, Some(v)));
            match (name, value) {
                ("lr-x100", _) => faults.lr_x100 = true,
                ("nan", Some(layer)) if !layer.is_empty() => faults.nan = Some(layer.to_string()),
                ("nan", _) => {
                    return Err(RunError::Usage(
                        "--inject nan needs a layer: nan=LAYER".into(),
                    ));
                }
                ("bias-lr-mult", Some(v)) => {
                    let parsed = v
                        .split_once(':')
                        .and_then(|(l, f)| Some((l.to_string(), f.parse::<f64>().ok()?)));
                    match parsed {
                        Some((layer, factor)) if !layer.is_empty() && factor.is_finite() => {
                            faults.bias_lr_mult = Some((layer, factor))
                        }
                        _ => {
                            return Err(RunError::Usage(format!(
                                "--inject bias-lr-mult={v}: expected LAYER:FACTOR"
                            )));
                        }
                    }
                }
                ("bias-lr-mult", None) => {
                    return Err(RunError::Usage(
                        "--inject bias-lr-mult needs LAYER:FACTOR".into(),
                    ));
                }
                _ => {}
            }
        }
        Ok(faults)
    }
}

/// The monitor as the trainer's hook, counting iterations across a model swap.
struct Watch<'a> {
    monitor: &'a mut GradMonitor,
    iteration: usize,
}

impl<M> TrainHook<M> for Watch<'_> {
    fn on_iteration(&mut self, report: &IterationReport<'_, M>) -> Control {
        if let Some(trace) = report.trace {
            self.monitor
                .observe(self.iteration, report.loss, report.lr, trace);
        }
        Control::Continue
    }
}

pub fn run(cx: &StepContext<'_>) -> Result<StepReport, RunError> {
    let (run_model, train, normalization, device) =
        (cx.run_model, cx.train, cx.normalization, &cx.device);
    let (seed, iterations, injected, out) = (
        cx.args.seed,
        cx.args.iterations as usize,
        cx.args.inject.as_slice(),
        cx.args.out.as_path(),
    );
    let faults = Faults::from_injected(injected)?;
    let lr = if faults.lr_x100 { 1.0 } else { 0.01 };
    let mut config = TrainConfig::new(OptimizerChoice::sgd(0.9), lr, normalization.clone())
        .with_seed(seed)
        .with_tap(TapDetail::Full)
        .with_progress(true);
    if let Some((layer, factor)) = &faults.bias_lr_mult {
        config = config.with_lr_mult(format!("^{}\\.bias$", layer.replace('.', "\\.")), *factor);
    }
    let mut monitor = GradMonitor::new(MonitorConfig::default(), &config.lr_mults);
    let nan_at = iterations / 3;
    with_model!(run_model.clone(), m => {
        let mut trainer = Trainer::new(m, config.clone(), device);
        let batcher = trainer.batcher().clone();
        let plan = batcher.plan(train.len(), 0);
        for i in 0..iterations {
            if i == nan_at && let Some(layer) = &faults.nan {
                let prefix = format!("{layer}.");
                let (model, planted) =
                    model_core::models::plant_nan(trainer.model().clone(), |path| path.starts_with(&prefix) && path.ends_with("weight"));
                if planted == 0 {
                    return Err(RunError::Usage(format!("--inject nan={layer}: no weight under `{layer}`")));
                }
                trainer = Trainer::new(model, config.clone(), device);
            }
            let batch = batcher.assemble(train, &plan[i % plan.len()])?;
            let mut watch = Watch { monitor: &mut monitor, iteration: i };
            if trainer.step(&batch, 0.0, 0, &mut watch).is_err() {
                // A NaN or Inf loss ends training; the monitor has seen that iteration.
                break;
            }
        }
    });
    let mut report = step_report(&monitor);
    let dir = out.join("gradients");
    std::fs::create_dir_all(&dir).map_err(|source| RunError::Write {
        path: dir.clone(),
        source,
    })?;
    let path = dir.join("iterations.json");
    let text = serde_json::to_string(&monitor.samples).expect("serialisable");
    model_core::write_atomic(&path, text.as_bytes())
        .map_err(|source| RunError::Write { path, source })?;
    report.artifacts.push("gradients/iterations.json".into());
    let path = dir.join("ranges.svg");
    model_core::write_atomic(&path, grad_monitor::range_plots_svg(&monitor).as_bytes())
        .map_err(|source| RunError::Write { path, source })?;
    report.artifacts.push("gradients/ranges.svg".into());
    // The per-iteration table lives in the artifact; keep the report's details to the last one.
    report.details = serde_json::json!({ "last_iteration": monitor.samples.last() });
    Ok(report)
}
