//! The checklist's step 5, `results`: occlusion and inverse occlusion of one held-out image per
//! label, and the model impact on the held-out mean image, through `impact`. The model is the
//! shared training run's, or with `--weights` the imported one as it is.

use impact::{ImpactCheck, step_report};
use model_core::StepReport;

use crate::checklist::{RunError, StepContext};
use crate::with_model;

/// The occlusion window when the settings leave it to the image (`results.window = 0`): 6 for
/// 28x28 (MNIST), a quarter of the smaller side otherwise (8 for CIFAR-10's 32x32).
pub fn auto_window(height: usize, width: usize) -> usize {
    let side = height.min(width);
    if side <= 28 { 6.min(side) } else { side / 4 }
}

pub fn run(cx: &StepContext<'_>) -> Result<StepReport, RunError> {
    let s = &cx.settings.results;
    let shape = cx.eval.shape();
    let window = if s.window == 0 {
        auto_window(shape.height, shape.width)
    } else {
        s.window
    };
    let check = ImpactCheck::builder()
        .window(window)
        .stride(s.stride)
        .border(s.border)
        .share_threshold(s.inside_share)
        .memory_budget(s.memory_budget_mib * 1024 * 1024)
        .lowered(s.lowered)
        .incremental(s.incremental)
        .progress(true)
        .build()
        .map_err(|e| RunError::Usage(format!("results step: {e}")))?;
    let model = match &cx.args.weights {
        Some(_) => cx.run_model,
        None => &cx.training()?.model,
    };
    let outcome =
        with_model!(model, m => check.run(m, cx.eval, cx.normalization, &cx.device, Some(cx.out)))
            .map_err(|e| RunError::Usage(format!("results step: {e}")))?;
    let mut report = step_report(&outcome);
    report.details["model_source"] = serde_json::json!(match &cx.args.weights {
        Some(w) => format!("imported from {}", w.display()),
        None => format!(
            "the shared training run ({} iterations)",
            cx.args.iterations
        ),
    });
    Ok(report)
}
