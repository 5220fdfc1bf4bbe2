//! The report contract: the JSON shape of `report.json`, non-finite numbers kept as `null`,
//! and atomic writes that never destroy the previous report.

use std::collections::BTreeMap;

use model_core::{Finding, Report, RunInfo, Step, StepReport, ToolInfo, Verdict, write_atomic};
use proptest::prelude::*;

fn sample_report() -> Report {
    let mut report = Report::new(
        ToolInfo {
            name: "nn-checklist".into(),
            version: "0.1.0".into(),
        },
        RunInfo {
            dataset: "mnist".into(),
            model: Some("lenet".into()),
            device: "flex".into(),
            seed: 42,
            injected: vec!["nan_weights=conv2".into()],
            seconds: 1.5,
            weights: None,
            iterations: Some(100),
            interrupted: None,
        },
    );
    let mut step = StepReport::new(Step::Gradients);
    step.metric("first_nan_iteration", 12.0);
    step.metric("max_diff_abs", f64::INFINITY);
    step.push(Finding {
        check: "first_nan".into(),
        verdict: Verdict::Fail,
        subject: "conv2 data".into(),
        measured: f64::NAN,
        threshold: 0.0,
        message: "NaN first appears in conv2's output".into(),
        remedy: "lower the learning rate".into(),
    });
    report.push(step);
    report
}

#[test]
fn report_json_has_the_contract_shape() {
    let json: serde_json::Value = serde_json::from_str(&sample_report().to_json()).unwrap();
    assert_eq!(json["schema_version"], 1);
    assert_eq!(json["tool"]["name"], "nn-checklist");
    for key in ["dataset", "model", "device", "seed", "injected", "seconds"] {
        assert!(json["run"].get(key).is_some(), "run.{key}");
    }
    assert_eq!(json["verdict"], "fail");
    let step = &json["steps"][0];
    assert_eq!(step["step"], "gradients");
    assert_eq!(step["verdict"], "fail");
    for key in ["seconds", "metrics", "findings", "details", "artifacts"] {
        assert!(step.get(key).is_some(), "steps[0].{key}");
    }
    let finding = &step["findings"][0];
    for key in [
        "check",
        "verdict",
        "subject",
        "measured",
        "threshold",
        "message",
        "remedy",
    ] {
        assert!(finding.get(key).is_some(), "findings[0].{key}");
    }
    assert!(finding["measured"].is_null(), "NaN is written as null");
    assert!(
        step["metrics"]["max_diff_abs"].is_null(),
        "Inf is written as null"
    );
    assert_eq!(step["metrics"]["first_nan_iteration"], 12.0);
    // Keys come in a fixed order: the top level as the contract lists it.
    let text = sample_report().to_json();
    let order: Vec<usize> = [
        "\"schema_version\"",
        "\"tool\"",
        "\"run\"",
        "\"verdict\"",
        "\"steps\"",
    ]
    .iter()
    .map(|k| text.find(k).unwrap())
    .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn a_report_with_nan_reads_back() {
    let report = sample_report();
    let back: Report = serde_json::from_str(&report.to_json()).unwrap();
    assert!(back.steps[0].findings[0].measured.is_nan());
    assert_eq!(back.steps[0].metrics["first_nan_iteration"], 12.0);
    assert_eq!(back.verdict, Verdict::Fail);
}

#[test]
fn a_failed_atomic_write_leaves_the_previous_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report.json");
    write_atomic(&path, b"previous").unwrap();
    // The target's folder cannot hold a new file: the parent is a regular file.
    let bad = path.join("nested.json");
    assert!(write_atomic(&bad, b"new").is_err());
    assert_eq!(std::fs::read(&path).unwrap(), b"previous");
    // No temporary file is left behind by a successful write either.
    write_atomic(&path, b"next").unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"next");
    let entries: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(entries.len(), 1);
}

fn verdict() -> impl Strategy<Value = Verdict> {
    prop_oneof![
        Just(Verdict::Pass),
        Just(Verdict::Warn),
        Just(Verdict::Fail)
    ]
}

proptest! {
    #[test]
    fn the_run_verdict_is_the_worst_finding(verdicts in proptest::collection::vec(proptest::collection::vec(verdict(), 0..5), 0..5)) {
        let mut report = sample_report();
        report.steps.clear();
        report.verdict = Verdict::Pass;
        for (k, vs) in verdicts.iter().enumerate() {
            let mut step = StepReport::new(Step::ALL[k]);
            for &v in vs {
                step.push(Finding { check: "c".into(), verdict: v, subject: "s".into(), measured: 1.0,
                    threshold: 2.0, message: "m".into(), remedy: String::new() });
            }
            prop_assert_eq!(step.verdict, Verdict::worst(vs.iter().copied()));
            report.push(step);
        }
        prop_assert_eq!(report.verdict, Verdict::worst(verdicts.iter().flatten().copied()));
    }

    #[test]
    fn metrics_round_trip_through_json(values in proptest::collection::btree_map("[a-z_]{1,12}", any::<f64>(), 0..8)) {
        let mut step = StepReport::new(Step::Data);
        step.metrics = values.clone();
        let back: StepReport = serde_json::from_str(&serde_json::to_string(&step).unwrap()).unwrap();
        let expect: BTreeMap<String, f64> = values.into_iter().map(|(k, v)| (k, if v.is_finite() { v } else { f64::NAN })).collect();
        prop_assert_eq!(back.metrics.len(), expect.len());
        for (k, v) in expect {
            let got = back.metrics[&k];
            prop_assert!(got == v || (got.is_nan() && v.is_nan()), "{}: {} vs {}", k, got, v);
        }
    }
}

#[cfg(unix)]
#[test]
fn written_reports_are_readable_by_others() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report.json");
    write_atomic(&path, b"{}").unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode & 0o044, 0o044, "mode {mode:o}");
}
