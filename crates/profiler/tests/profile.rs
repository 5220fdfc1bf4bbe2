//! The profiler on real data: rows add up to the iteration, a planted slow layer is named, the
//! data-layer verdict follows the loader, and the trace file is well-formed.

use std::sync::Arc;

use burn::prelude::*;
use model_core::bundled::{self, MnistSplit};
use model_core::models::LeNet;
use model_core::tap::{LayerRecord, LayerTrace, TapDetail};
use model_core::train::{OptimizerChoice, TrainConfig, Trainer};
use model_core::{
    Dataset, LoadOptions, LoadStrategy, Normalization, SampleShape, SampleSource, Verdict,
};
use profiler::{
    IterationRecord, Profile, ProfileConfig, chrome_trace, compare_strategies, profile,
};
use proptest::prelude::*;

fn mnist() -> Dataset {
    bundled::mnist(
        MnistSplit::Train,
        &LoadOptions::default().with_cache(bundled::workspace_cache()),
    )
    .unwrap()
    .stratified_subset(2_000, 1)
    .unwrap()
}

fn lenet_trainer(
    shape: SampleShape,
    normalization: Normalization,
    delay: Option<(&str, f64)>,
) -> Trainer<LeNet> {
    let device = Device::flex().autodiff();
    device.seed(1);
    let mut config = TrainConfig::new(OptimizerChoice::sgd(0.9), 0.01, normalization)
        .with_tap(TapDetail::Timing);
    if let Some((layer, seconds)) = delay {
        config = config.with_planted_delay(layer, seconds);
    }
    Trainer::new(LeNet::new(shape, 10, &device), config, &device)
}

#[test]
fn the_rows_add_up_to_the_iteration() {
    let data = mnist();
    let mut trainer = lenet_trainer(data.shape(), Normalization::mnist(), None);
    let config = ProfileConfig {
        warmup: 2,
        iterations: 8,
        ..ProfileConfig::default()
    };
    let (profile, records) = profile(&mut trainer, &data, &config).unwrap();
    assert_eq!(records.len(), 8);
    let names: Vec<&str> = profile.layers.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "data", "conv1", "pool1", "conv2", "pool2", "ip1", "ip2", "loss"
        ]
    );
    for r in &records {
        let traced = r.trace.total_seconds() + r.optimizer_seconds;
        assert!(
            traced <= r.wall_seconds * 1.0001,
            "traced {traced} > wall {}",
            r.wall_seconds
        );
        // What the rows do not cover (bookkeeping between the timed windows) stays small.
        assert!(
            traced >= 0.95 * r.wall_seconds,
            "rows cover {:.3} of the iteration",
            traced / r.wall_seconds
        );
    }
    let shares: f64 = profile.layers.iter().map(|l| l.share).sum::<f64>()
        + (profile.optimizer.mean_ms + profile.untraced.mean_ms) / profile.iteration.mean_ms;
    assert!((shares - 1.0).abs() < 0.05, "shares add up to {shares}");
    assert!(profile.samples_per_second > 0.0);
    assert!(
        profile
            .layers
            .iter()
            .all(|l| l.name == "data" || l.backward.mean_ms > 0.0)
    );
    let conv1 = &profile.layers[1];
    assert_eq!(
        (conv1.param_bytes, conv1.activation_bytes),
        (4 * 520, 4 * 64 * 20 * 24 * 24)
    );
    assert!(profile.peak_rss_bytes.unwrap_or(0) > 0);
}

#[test]
fn a_planted_slow_layer_is_ranked_first_with_its_share() {
    let data = mnist();
    let planted = 0.060;
    // Planted on a layer that costs almost nothing itself, so that its share is the planted one.
    let mut trainer = lenet_trainer(
        data.shape(),
        Normalization::mnist(),
        Some(("pool2", planted)),
    );
    let config = ProfileConfig {
        warmup: 1,
        iterations: 6,
        ..ProfileConfig::default()
    };
    let (profile, _) = profile(&mut trainer, &data, &config).unwrap();
    let top = profile.ranked().into_iter().next().unwrap();
    assert_eq!(top.name, "pool2");
    let planted_share = planted * 1e3 / profile.iteration.mean_ms;
    assert!(
        top.share >= planted_share && (top.share - planted_share) / planted_share <= 0.10,
        "pool2 {:.3} vs planted {planted_share:.3}",
        top.share
    );
    let bottleneck = profile
        .findings(&config)
        .into_iter()
        .find(|f| f.check == "bottleneck")
        .unwrap();
    assert_eq!(bottleneck.subject, "pool2");
    // The verdict follows the share: a dominating layer warns, the same share under a higher
    // threshold passes.
    let runner_up = profile.ranked()[1..]
        .iter()
        .find(|l| l.kind != "Data")
        .map_or(0.0, |l| l.share);
    let expected = if top.share >= config.bottleneck_warn_share
        || (top.share >= config.bottleneck_warn_share / 2.0
            && top.share >= config.bottleneck_warn_ratio * runner_up)
    {
        Verdict::Warn
    } else {
        Verdict::Pass
    };
    assert_eq!(bottleneck.verdict, expected, "share {:.3}", top.share);
    let lenient = ProfileConfig {
        bottleneck_warn_share: 1.01,
        bottleneck_warn_ratio: f64::INFINITY,
        ..config.clone()
    };
    let strict = ProfileConfig {
        bottleneck_warn_share: top.share * 0.9,
        ..config.clone()
    };
    let verdict_under = |c: &ProfileConfig| {
        profile
            .findings(c)
            .into_iter()
            .find(|f| f.check == "bottleneck")
            .unwrap()
            .verdict
    };
    assert_eq!(verdict_under(&lenient), Verdict::Pass);
    assert_eq!(verdict_under(&strict), Verdict::Warn);
}

/// An on-demand reader with a fixed latency per sample, as a network file system or a cold disk
/// (the seed measured 278 ms per batch of images read on demand).
struct SlowDisk {
    inner: Arc<dyn SampleSource>,
    latency: std::time::Duration,
}

impl std::fmt::Debug for SlowDisk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SlowDisk")
    }
}

impl SampleSource for SlowDisk {
    fn len(&self) -> usize {
        self.inner.len()
    }
    fn shape(&self) -> SampleShape {
        self.inner.shape()
    }
    fn read_into(&self, index: usize, out: &mut [u8]) -> model_core::error::Result<()> {
        std::thread::sleep(self.latency);
        self.inner.read_into(index, out)
    }
    fn describe(&self) -> String {
        format!(
            "{} with {:?} per sample",
            self.inner.describe(),
            self.latency
        )
    }
}

#[test]
fn the_data_layer_verdict_follows_the_loader() {
    let options =
        LoadOptions::new(LoadStrategy::OnDemandNoCache).with_cache(bundled::workspace_cache());
    let jpegs = bundled::cifar10_test(&options)
        .unwrap()
        .stratified_subset(1_000, 2)
        .unwrap();
    let config = ProfileConfig {
        warmup: 1,
        iterations: 4,
        ..ProfileConfig::default()
    };
    let verdict_of = |dataset: &Dataset| {
        let mut trainer = lenet_trainer(dataset.shape(), Normalization::cifar10(), None);
        let (profile, _) = profile(&mut trainer, dataset, &config).unwrap();
        let finding = profile
            .findings(&config)
            .into_iter()
            .find(|f| f.check == "data_layer_share")
            .unwrap();
        eprintln!("{}: {}", dataset.source().describe(), finding.message);
        finding.verdict
    };
    let in_memory = jpegs.with_strategy(LoadStrategy::LoadAll).unwrap();
    assert_eq!(verdict_of(&in_memory), Verdict::Pass);
    let slow = jpegs
        .read_through(Arc::new(SlowDisk {
            inner: jpegs.source().clone(),
            latency: std::time::Duration::from_millis(2),
        }))
        .unwrap();
    assert_eq!(verdict_of(&slow), Verdict::Fail);
}

#[test]
fn loading_strategies_are_compared_and_extrapolated() {
    let options =
        LoadOptions::new(LoadStrategy::OnDemandNoCache).with_cache(bundled::workspace_cache());
    let jpegs = bundled::cifar10_test(&options).unwrap();
    let batcher = model_core::Batcher::new(64, 3, Normalization::cifar10());
    let c = compare_strategies(&jpegs, &batcher, 10, 4096).unwrap();
    eprintln!("{c:?}");
    assert!(c.on_demand_batch_ms > c.load_all_batch_ms, "{c:?}");
    assert_eq!(c.load_all_bytes, 10_000 * 3 * 32 * 32);
    let hours = c.hours_saved(500_000);
    let expected =
        ((c.on_demand_batch_ms - c.load_all_batch_ms) * 500.0 - c.load_all_setup_seconds) / 3600.0;
    assert!((hours - expected).abs() < 1e-9);
}

fn record(
    start: f64,
    layers: &[(f64, f64)],
    data: f64,
    tail: f64,
    optimizer: f64,
) -> IterationRecord {
    let mut trace = LayerTrace {
        tail_backward_seconds: tail,
        ..Default::default()
    };
    trace.layers.push(LayerRecord {
        name: "data".into(),
        kind: "Data".into(),
        output_shape: vec![1],
        forward_seconds: data,
        backward_seconds: 0.0,
        data: None,
        diff: None,
    });
    for (i, &(f, b)) in layers.iter().enumerate() {
        trace.layers.push(LayerRecord {
            name: format!("layer{i}"),
            kind: "Test".into(),
            output_shape: vec![1],
            forward_seconds: f,
            backward_seconds: b,
            data: None,
            diff: None,
        });
    }
    let wall = trace.total_seconds() + optimizer;
    IterationRecord {
        start,
        wall_seconds: wall,
        optimizer_seconds: optimizer,
        trace,
    }
}

proptest! {
    /// The trace file is Chrome trace-event JSON whose complete events nest on every track:
    /// any two either do not overlap or one holds the other.
    #[test]
    fn trace_events_nest(iterations in proptest::collection::vec(
        (proptest::collection::vec((1e-6f64..0.05, 1e-6f64..0.05), 1..8), 0.0f64..0.01, 0.0f64..0.01, 0.0f64..0.01), 1..4)) {
        let mut start = 0.0;
        let mut records = Vec::new();
        for (layers, data, tail, optimizer) in &iterations {
            let r = record(start, layers, *data, *tail, *optimizer);
            start += r.wall_seconds + 1e-4;
            records.push(r);
        }
        let text = serde_json::to_string(&chrome_trace(&records)).unwrap();
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        let events: Vec<&serde_json::Value> = parsed["traceEvents"].as_array().unwrap().iter().filter(|e| e["ph"] == "X").collect();
        let layer_count: usize = iterations.iter().map(|(l, ..)| l.len()).sum();
        // data + forward span + layers + backward span + layers + optimizer, per iteration.
        prop_assert_eq!(events.len(), iterations.len() * 4 + 2 * layer_count);
        for tid in 1..=4 {
            let mut spans: Vec<(f64, f64)> = events
                .iter()
                .filter(|e| e["tid"] == tid)
                .map(|e| { let ts = e["ts"].as_f64().unwrap(); (ts, ts + e["dur"].as_f64().unwrap()) })
                .collect();
            spans.sort_by(|a, b| a.0.total_cmp(&b.0).then(b.1.total_cmp(&a.1)));
            for i in 0..spans.len() {
                for j in i + 1..spans.len() {
                    let (a, b) = (spans[i], spans[j]);
                    let disjoint = b.0 >= a.1 - 1e-2;
                    let nested = b.1 <= a.1 + 1e-2;
                    prop_assert!(disjoint || nested, "track {}: {:?} and {:?} overlap", tid, a, b);
                }
            }
        }
    }

    /// The per-layer shares, the optimizer and the remainder account for the whole iteration.
    #[test]
    fn profile_shares_account_for_the_iteration(layers in proptest::collection::vec((1e-6f64..0.05, 1e-6f64..0.05), 1..8), optimizer in 0.0f64..0.01) {
        let records = vec![record(0.0, &layers, 0.001, 0.0, optimizer)];
        let p = Profile::from_records(&records, 64);
        let total: f64 = p.layers.iter().map(|l| l.share).sum::<f64>() + p.optimizer.mean_ms / p.iteration.mean_ms;
        prop_assert!((total - 1.0).abs() < 1e-9);
    }
}
