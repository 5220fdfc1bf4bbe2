//! The checklist's step 3, `timings`: profile training iterations of the run's model through
//! the tap (`profiler`), compare the loading strategies on the run's dataset, write the bar
//! chart and the Chrome trace.

use model_core::tap::TapDetail;
use model_core::train::{OptimizerChoice, TrainConfig, Trainer};
use model_core::{Batcher, LoadOptions, LoadStrategy, StepReport};
use profiler::{
    ProfileConfig, bar_chart_svg, chrome_trace, compare_strategies, profile, step_report,
};

use crate::checklist::{RunError, StepContext};
use crate::with_model;

/// Extra forward seconds the `slow-layer=NAME` fault plants in NAME.
pub const SLOW_LAYER_SECONDS: f64 = 0.2;

/// The `slow-layer` fault, from `--inject`.
pub fn slow_layer(injected: &[String]) -> Result<Option<String>, RunError> {
    for spec in injected {
        if let Some(rest) = spec.strip_prefix("slow-layer") {
            return match rest.strip_prefix('=').filter(|v| !v.is_empty()) {
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
    let (run_model, train, choice, cache, normalization, device) = (
        cx.run_model,
        cx.train,
        cx.choice,
        cx.options,
        cx.normalization,
        &cx.device,
    );
    let (seed, iterations, injected, out) = (
        cx.args.seed,
        cx.args.iterations as usize,
        cx.args.inject.as_slice(),
        cx.args.out.as_path(),
    );
    let config = ProfileConfig {
        warmup: 3,
        iterations: iterations.clamp(1, 30),
        ..ProfileConfig::default()
    };
    let slow = slow_layer(injected)?;
    let mut train_config = TrainConfig::new(OptimizerChoice::sgd(0.9), 0.01, normalization.clone())
        .with_seed(seed)
        .with_tap(TapDetail::Timing);
    if let Some(layer) = &slow {
        train_config = train_config.with_planted_delay(layer.clone(), SLOW_LAYER_SECONDS);
    }
    let (profiled, records) = with_model!(run_model.clone(), m => {
        let mut trainer = Trainer::new(m, train_config, device);
        profile(&mut trainer, train, &config).map_err(|e| RunError::Usage(format!("profiling: {e}")))?
    });
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
    let batcher = Batcher::new(64, seed, normalization.clone());
    let comparison = compare_strategies(&on_demand, &batcher, 20, 4096)?;

    let mut report = step_report(&profiled, Some(&comparison), &config);
    if let Some(layer) = &slow {
        report.details["planted_slow_layer"] =
            serde_json::json!({ "layer": layer, "extra_forward_seconds": SLOW_LAYER_SECONDS });
    }
    let dir = out.join("timings");
    std::fs::create_dir_all(&dir).map_err(|source| RunError::Write {
        path: dir.clone(),
        source,
    })?;
    let write = |rel: &str, bytes: &[u8]| -> Result<(), RunError> {
        let path = out.join(rel);
        model_core::write_atomic(&path, bytes).map_err(|source| RunError::Write { path, source })
    };
    write("timings/layers.svg", bar_chart_svg(&profiled).as_bytes())?;
    write(
        "timings/trace.json",
        serde_json::to_string(&chrome_trace(&records))
            .expect("serialisable")
            .as_bytes(),
    )?;
    report.artifacts.push("timings/layers.svg".into());
    report.artifacts.push("timings/trace.json".into());
    Ok(report)
}
