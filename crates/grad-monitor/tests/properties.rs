//! Properties of the verdicts on synthetic traces.

use grad_monitor::{GradMonitor, MonitorConfig};
use model_core::tap::{BlobStats, LayerRecord, LayerTrace, ParamRecord};
use proptest::prelude::*;

fn stats(v: f32) -> BlobStats {
    BlobStats {
        count: 4,
        min: -v,
        max: v,
        mean: 0.0,
        mean_abs: v / 2.0,
        nan: if v.is_nan() { 4 } else { 0 },
        inf: if v.is_infinite() { 4 } else { 0 },
    }
}

fn trace(layers: usize, data: &[f32], diff: &[f32]) -> LayerTrace {
    LayerTrace {
        layers: (0..layers)
            .map(|i| LayerRecord {
                name: format!("l{i}"),
                kind: "InnerProduct".into(),
                output_shape: vec![4],
                forward_seconds: 0.0,
                backward_seconds: 0.0,
                data: Some(stats(data[i])),
                diff: Some(stats(diff[i])),
            })
            .collect(),
        params: (0..layers)
            .map(|i| ParamRecord {
                name: format!("l{i}.weight"),
                layer: Some(format!("l{i}")),
                shape: vec![4],
                value: Some(stats(1.0)),
                grad: Some(stats(0.01)),
            })
            .collect(),
        ..Default::default()
    }
}

proptest! {
    /// A NaN planted in layer `j`'s data at iteration `at` is reported there, at that iteration;
    /// in its diff, the latest layer holding it is named.
    #[test]
    fn nonfinite_is_found_where_it_starts(layers in 2usize..8, iterations in 2usize..30, j in 0usize..8, at in 0usize..30, in_diff in any::<bool>()) {
        let (j, at) = (j % layers, at % iterations);
        let mut monitor = GradMonitor::new(MonitorConfig::default(), &[]);
        for it in 0..iterations {
            let mut data = vec![1.0f32; layers];
            let mut diff = vec![0.1f32; layers];
            if it >= at {
                if in_diff {
                    // A NaN diff flows from the layer where it appears down to the first layer.
                    for d in diff.iter_mut().take(j + 1) { *d = f32::NAN; }
                } else {
                    for d in data.iter_mut().skip(j) { *d = f32::NAN; }
                }
            }
            monitor.observe(it, 1.0, 0.01, &trace(layers, &data, &diff));
        }
        let findings = monitor.findings();
        let nonfinite = findings.iter().find(|f| f.check == "nonfinite").expect("found");
        prop_assert_eq!(nonfinite.subject.clone(), format!("l{j}"));
        prop_assert_eq!(nonfinite.measured, at as f64);
        let blob = if in_diff { "diff" } else { "data" };
        prop_assert!(nonfinite.message.contains(blob), "{}", nonfinite.message);
    }

    /// Steady, finite statistics raise no failure.
    #[test]
    fn steady_runs_raise_nothing(layers in 1usize..8, iterations in 1usize..60, scale in 1e-3f32..1e3) {
        let mut monitor = GradMonitor::new(MonitorConfig::default(), &[]);
        for it in 0..iterations {
            monitor.observe(it, 1.0 / (it + 1) as f32, 0.01, &trace(layers, &vec![scale; layers], &vec![scale * 1e-3; layers]));
        }
        prop_assert!(monitor.findings().iter().all(|f| f.verdict != model_core::Verdict::Fail));
    }
}
