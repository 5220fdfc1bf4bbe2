//! `--baseline report.json`: compares a run with an earlier report and fails on regressions, so
//! the checklist can gate CI.
//!
//! Three kinds of regression, each a `regression` finding (verdict fail) in the step it concerns:
//! a step whose verdict got worse; a held-out accuracy lower by more than
//! `baseline.accuracy_drop`; a layer whose median forward + backward time grew by more than
//! `baseline.layer_time_increase` (layers under `baseline.layer_time_min_ms` in both runs are
//! left out: their times are noise).

use std::path::Path;

use model_core::{Finding, Report, StepReport, Verdict};

use crate::settings::BaselineSettings;

/// Reads an earlier report; an unreadable or malformed file is an error naming it.
pub fn read(path: &Path) -> Result<Report, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("--baseline {}: cannot read: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| {
        format!(
            "--baseline {}: not a checklist report.json (line {}, column {}): {e}",
            path.display(),
            e.line(),
            e.column()
        )
    })
}

fn regression(subject: &str, measured: f64, threshold: f64, message: String) -> Finding {
    Finding {
        check: "regression".into(),
        verdict: Verdict::Fail,
        subject: subject.into(),
        measured,
        threshold,
        message,
        remedy: "compare the two reports' details; if the change is intended, make this report the new baseline".into(),
    }
}

/// `(name, median forward + backward ms)` of every layer in a timings step's details.
fn layer_times(step: &StepReport) -> Vec<(String, f64)> {
    let Some(layers) = step.details.get("layers").and_then(|l| l.as_array()) else {
        return Vec::new();
    };
    layers
        .iter()
        .filter_map(|l| {
            let name = l.get("name")?.as_str()?.to_string();
            let ms = |key: &str| l.get(key)?.get("median_ms")?.as_f64();
            Some((
                name,
                ms("forward").unwrap_or(0.0) + ms("backward").unwrap_or(0.0),
            ))
        })
        .collect()
}

/// Adds a `regression` finding to each step of `report` that regressed against `baseline`, and
/// records the comparison in the step's details (`baseline`).
pub fn compare(report: &mut Report, baseline: &Report, settings: &BaselineSettings) {
    for step in &mut report.steps {
        let Some(before) = baseline.steps.iter().find(|s| s.step == step.step) else {
            continue;
        };
        let mut found = Vec::new();
        if step.verdict > before.verdict {
            found.push(regression(
                step.step.as_str(),
                f64::NAN,
                f64::NAN,
                format!(
                    "the step's verdict went from {} to {}",
                    before.verdict, step.verdict
                ),
            ));
        }
        if let (Some(&now), Some(&then)) =
            (step.metrics.get("accuracy"), before.metrics.get("accuracy"))
            && now < then - settings.accuracy_drop
        {
            found.push(regression(
                "accuracy",
                now,
                then - settings.accuracy_drop,
                format!(
                    "held-out accuracy fell from {:.2}% to {:.2}% (more than {:.2} points)",
                    then * 100.0,
                    now * 100.0,
                    settings.accuracy_drop * 100.0
                ),
            ));
        }
        let then_times = layer_times(before);
        for (name, now) in layer_times(step) {
            let Some((_, then)) = then_times.iter().find(|(n, _)| *n == name) else {
                continue;
            };
            if now.max(*then) < settings.layer_time_min_ms {
                continue;
            }
            let limit = then * (1.0 + settings.layer_time_increase);
            if now > limit {
                found.push(regression(
                    &name,
                    now,
                    limit,
                    format!(
                        "layer {name} takes {now:.2} ms (forward + backward, median), {then:.2} ms in the baseline: +{:.0}%",
                        (now / then.max(1e-9) - 1.0) * 100.0
                    ),
                ));
            }
        }
        step.details["baseline"] = serde_json::json!({
            "verdict": before.verdict,
            "regressions": found.len(),
        });
        for finding in found {
            step.push(finding);
        }
    }
    report.verdict = Verdict::worst(report.steps.iter().map(|s| s.verdict));
}

#[cfg(test)]
mod tests {
    use model_core::{RunInfo, Step, ToolInfo};
    use proptest::prelude::*;

    use super::*;

    fn report_with(verdict: Verdict, accuracy: f64, conv_ms: f64) -> Report {
        let mut report = Report::new(
            ToolInfo {
                name: "nn-checklist".into(),
                version: "0".into(),
            },
            RunInfo {
                dataset: "mnist".into(),
                model: None,
                device: "flex".into(),
                seed: 1,
                injected: vec![],
                seconds: 0.0,
                weights: None,
                iterations: None,
                interrupted: None,
            },
        );
        let mut weights = StepReport::new(Step::Weights);
        weights.metric("accuracy", accuracy);
        weights.verdict = verdict;
        report.push(weights);
        let mut timings = StepReport::new(Step::Timings);
        timings.details = serde_json::json!({"layers": [
            {"name": "conv1", "forward": {"median_ms": conv_ms}, "backward": {"median_ms": conv_ms}},
            {"name": "relu", "forward": {"median_ms": 0.01}, "backward": {"median_ms": 0.01}},
        ]});
        report.push(timings);
        report
    }

    proptest! {
        /// A run compared with itself never regresses; a worse verdict, a lower accuracy or a
        /// slower layer beyond the thresholds always does, in the step concerned.
        #[test]
        fn regressions_are_caught_and_self_comparison_is_clean(
            accuracy in 0.05f64..1.0,
            drop in 0.0f64..0.05,
            conv in 1.0f64..50.0,
            slower in 0.0f64..2.0,
        ) {
            let settings = BaselineSettings::default();
            let before = report_with(Verdict::Pass, accuracy, conv);
            let mut same = before.clone();
            compare(&mut same, &before, &settings);
            prop_assert_eq!(same.verdict, Verdict::Pass);

            let mut after = report_with(Verdict::Pass, accuracy - drop, conv * (1.0 + slower));
            compare(&mut after, &before, &settings);
            let accuracy_regressed = drop > settings.accuracy_drop;
            let time_regressed = slower > settings.layer_time_increase;
            let subjects: Vec<&str> = after.steps.iter().flat_map(|s| &s.findings).map(|f| f.subject.as_str()).collect();
            prop_assert_eq!(subjects.contains(&"accuracy"), accuracy_regressed);
            prop_assert_eq!(subjects.contains(&"conv1"), time_regressed);
            prop_assert!(!subjects.contains(&"relu"));
            prop_assert_eq!(after.verdict == Verdict::Fail, accuracy_regressed || time_regressed);

            let mut worse = report_with(Verdict::Warn, accuracy, conv);
            compare(&mut worse, &before, &settings);
            prop_assert_eq!(worse.steps[0].findings[0].subject.as_str(), "weights");
            prop_assert_eq!(worse.verdict, Verdict::Fail);
        }
    }
}
