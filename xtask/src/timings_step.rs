//! The checklist's step 3, `timings`: profile the shared training run's iterations (per-layer
//! forward and backward times from the tap, via `profiler`), compare the loading strategies on
//! the run's dataset, write the bar chart and the Chrome trace.

use model_core::{Batcher, LoadOptions, LoadStrategy, StepReport};
use profiler::{
    Profile, ProfileConfig, bar_chart_svg, chrome_trace, compare_strategies, step_report,
};

use crate::checklist::{RunError, StepContext, fault_parts, write_artifact};

/// The `slow-layer` fault, from `--inject`.
pub fn slow_layer(injected: &[String]) -> Result<Option<String>, RunError> {
    for spec in injected {
        if let ("slow-layer", value) = fault_parts(spec) {
            return match value.filter(|v| !v.is_empty()) {
                Some(layer) => Ok(Some(layer.to_string())),
                None => Err(RunError::Usage(
                    "--inject slow-layer needs a layer: slow-layer=NAME".into(),
                )),
            };
        }
    }
    Ok(None)
}

pub fn run(cx: &StepContext<'_>) -> Result<StepReport, RunError> {
    let (train, choice, cache, normalization) = (cx.train, cx.choice, cx.options, cx.normalization);
    let (seed, injected, out) = (cx.args.seed, cx.args.inject.as_slice(), cx.out);
    let slow = slow_layer(injected)?;
    // The shared training run's iterations, past its warm-up, are the profile.
    let run = cx.training()?;
    let records = &run.records;
    if records.is_empty() {
        return Err(RunError::Usage(format!(
            "the training run ended after {} iterations, before any could be timed (after {} warm-up iterations)",
            run.iterations,
            crate::training::PROFILE_WARMUP
        )));
    }
    let config = ProfileConfig {
        warmup: crate::training::PROFILE_WARMUP,
        iterations: records.len(),
        data_warn_share: cx.settings.timings.data_warn_share,
        data_fail_share: cx.settings.timings.data_fail_share,
        bottleneck_warn_share: cx.settings.timings.bottleneck_warn_share,
        bottleneck_warn_ratio: cx.settings.timings.bottleneck_warn_ratio,
    };
    let profiled = Profile::from_records(records, run.batch_size);
    if let Some(layer) = &slow
        && !profiled.layers.iter().any(|l| &l.name == layer)
    {
        let names: Vec<&str> = profiled.layers.iter().map(|l| l.name.as_str()).collect();
        return Err(RunError::Usage(format!(
            "--inject slow-layer={layer}: no such layer; the model's layers: {}",
            names.join(", ")
        )));
    }

    // The loading strategies, on the run's own dataset read from disk.
    let on_demand = choice
        .open(&LoadOptions::new(LoadStrategy::OnDemandNoCache).with_cache(cache.cache.clone()))?
        .train;
    let on_demand = match on_demand.len() > train.len() {
        true => on_demand.stratified_subset(train.len(), seed)?,
        false => on_demand,
    };
    let batcher = Batcher::new(run.batch_size, seed, normalization.clone());
    let comparison = compare_strategies(
        &on_demand,
        &batcher,
        cx.settings.timings.strategy_batches,
        4096,
    )?;

    let mut report = step_report(&profiled, Some(&comparison), &config);
    report.details["measured_with"] = serde_json::json!(
        "the shared training run, tap at full detail: layer times exclude the statistics, the iteration time includes them"
    );
    if let Some(layer) = &slow {
        report.details["planted_slow_layer"] = serde_json::json!({ "layer": layer, "extra_forward_seconds": cx.settings.timings.slow_layer_seconds });
    }
    write_artifact(
        out,
        &mut report,
        "timings/layers.svg",
        bar_chart_svg(&profiled).as_bytes(),
    )?;
    let trace = serde_json::to_string(&chrome_trace(records)).expect("serialisable");
    write_artifact(out, &mut report, "timings/trace.json", trace.as_bytes())?;
    Ok(report)
}
