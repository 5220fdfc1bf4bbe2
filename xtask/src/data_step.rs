//! The checklist's step 1, `data`: a t-SNE map of a stratified sample of the training split,
//! the per-label mean images and the separability verdict, through `data-check`; the
//! `shuffle-labels` fault shuffles the labels first.

use data_check::{DataCheck, step_report, with_shuffled_labels};
use model_core::StepReport;

use crate::checklist::{RunError, StepContext, fault_parts};

fn failed(e: data_check::DataCheckError) -> RunError {
    RunError::Usage(format!("data step: {e}"))
}

pub fn run(cx: &StepContext<'_>) -> Result<StepReport, RunError> {
    let s = &cx.settings.data;
    let seed = cx.args.seed;
    let shuffle = cx
        .args
        .inject
        .iter()
        .any(|f| fault_parts(f).0 == "shuffle-labels");
    // The sample first, so that shuffling reads only the samples mapped.
    let sample = if s.tsne_points < cx.train.len() {
        cx.train.stratified_subset(s.tsne_points, seed)?
    } else {
        cx.train.clone()
    };
    let dataset = if shuffle {
        with_shuffled_labels(&sample, seed).map_err(failed)?
    } else {
        sample
    };
    let early = s.tsne_iterations.min(250);
    let check = DataCheck::builder()
        .points(s.tsne_points)
        .seed(seed)
        .pca_dims(s.pca_dims)
        .k(s.knn_k)
        .perplexity(s.perplexity)
        .iterations(early, s.tsne_iterations - early)
        .pass_accuracy(s.pass_accuracy)
        .fail_lift(s.fail_lift)
        .memory_budget(s.memory_budget_mib as u64 * 1024 * 1024)
        .progress(true)
        .build()
        .map_err(failed)?;
    let outcome = check.run(&dataset, cx.out).map_err(failed)?;
    let mut report = step_report(&outcome);
    if shuffle {
        report.details["planted"] = serde_json::json!("shuffle-labels");
    }
    report.details["split"] = serde_json::json!(cx.train.name());
    Ok(report)
}
