//! The checklist's step 4, `gradients`: what `grad-monitor` saw of the shared training run (the
//! tap at full detail); a planted fault (`lr-x100`, `nan=LAYER`, `bias-lr-mult=LAYER:FACTOR`)
//! gets a run of its own, so the other steps keep a healthy model.

use grad_monitor::step_report;
use model_core::StepReport;

use crate::checklist::{RunError, StepContext, fault_parts, write_artifact};
use crate::training;

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
            match fault_parts(spec) {
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

impl Faults {
    /// Whether any fault of this step is planted (its run is then its own).
    pub fn any(&self) -> bool {
        self.lr_x100 || self.nan.is_some() || self.bias_lr_mult.is_some()
    }
}

pub fn run(cx: &StepContext<'_>) -> Result<StepReport, RunError> {
    let faults = Faults::from_injected(&cx.args.inject)?;
    // A planted fault gets a run of its own, so the model the other steps see stays healthy.
    let own;
    let run = if faults.any() {
        own = training::train(cx, &faults, None, &cx.settings.gradients)?;
        &own
    } else {
        cx.training()?
    };
    let monitor = &run.monitor;
    let mut report = step_report(monitor);
    report.details["run"] = serde_json::json!({
        "iterations": run.iterations,
        "shared": !faults.any(),
        "diverged_at": run.diverged.map(|(i, _)| i),
        "seconds": run.seconds,
    });
    let samples = serde_json::to_string(&monitor.samples).expect("serialisable");
    write_artifact(
        cx.out,
        &mut report,
        "gradients/iterations.json",
        samples.as_bytes(),
    )?;
    let plots = grad_monitor::range_plots_svg(monitor);
    write_artifact(
        cx.out,
        &mut report,
        "gradients/ranges.svg",
        plots.as_bytes(),
    )?;
    // The per-iteration table lives in the artifact; keep the report's details to the last one.
    report.details["last_iteration"] = serde_json::json!(monitor.samples.last());
    Ok(report)
}
