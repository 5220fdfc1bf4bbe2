//! The trainer on real MNIST: reproducible, stops cleanly on divergence, honours lr_mult,
//! clipping, loss weight, schedules and checkpoints.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::prelude::*;
use model_core::bundled::{self, MnistSplit};
use model_core::models::{Classifier, LeNet};
use model_core::tap::TapDetail;
use model_core::train::{
    Clipping, Control, LrSchedule, OptimizerChoice, TrainConfig, TrainError, Trainer, Unobserved,
    gradient_norm,
};
use model_core::{Dataset, LoadOptions, Normalization};

/// 2,000 stratified MNIST training images.
fn mnist_subset() -> &'static Dataset {
    static DATA: OnceLock<Dataset> = OnceLock::new();
    DATA.get_or_init(|| {
        let train = bundled::mnist(
            MnistSplit::Train,
            &LoadOptions::default().with_cache(bundled::workspace_cache()),
        )
        .unwrap();
        train.stratified_subset(2_000, 9).unwrap()
    })
}

fn seeded_lenet(device: &Device, seed: u64) -> LeNet {
    model_core::models::build_seeded(device, seed, LeNet::mnist)
}

fn trainer(config: TrainConfig, seed: u64) -> Trainer<LeNet> {
    let device = Device::flex().autodiff();
    Trainer::new(seeded_lenet(&device, seed), config, &device)
}

fn sgd(lr: f64) -> TrainConfig {
    TrainConfig::new(OptimizerChoice::sgd(0.9), lr, Normalization::mnist()).with_batch_size(32)
}

fn losses(trainer: &mut Trainer<LeNet>, iterations: usize) -> Vec<f32> {
    let mut seen = Vec::new();
    trainer
        .fit(
            mnist_subset(),
            iterations,
            &mut |it: &model_core::train::IterationReport<'_, LeNet>| {
                seen.push(it.loss);
                Control::Continue
            },
        )
        .unwrap();
    seen
}

fn params<M: Module>(model: &M) -> BTreeMap<String, Vec<f32>> {
    struct V(Vec<String>, BTreeMap<String, Vec<f32>>);
    impl ModuleVisitor for V {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.0.push(name.into());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.0.pop();
        }
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            self.1.insert(
                self.0.join("."),
                p.val().inner().try_into_vec_as::<f32>().unwrap(),
            );
        }
    }
    let mut v = V(vec![], BTreeMap::new());
    model.visit(&mut v);
    v.1
}

fn l2(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum()
}

#[test]
fn the_same_seed_gives_the_same_losses() {
    let a = losses(&mut trainer(sgd(0.01), 7), 6);
    let b = losses(&mut trainer(sgd(0.01), 7), 6);
    assert_eq!(a, b);
    assert!(a.iter().all(|l| l.is_finite()));
    let c = losses(&mut trainer(sgd(0.01).with_seed(8), 8), 6);
    assert_ne!(a, c, "another seed, another run");
}

#[test]
fn training_lowers_the_loss_and_evaluates() {
    let mut t = trainer(sgd(0.01).with_tap(TapDetail::Timing), 1);
    let summary = t.fit(mnist_subset(), 60, &mut Unobserved).unwrap();
    assert_eq!(summary.iterations, 60);
    assert_eq!(summary.epochs_started, 1);
    assert!(
        summary.recent_loss < summary.first_loss * 0.5,
        "{summary:?}"
    );
    let eval = t.evaluate(mnist_subset()).unwrap();
    assert_eq!(eval.images, 2_000);
    assert!(eval.accuracy > 0.8, "{eval:?}");
}

#[test]
fn the_hook_sees_every_trace_and_can_stop_the_run() {
    let mut t = trainer(sgd(0.01).with_tap(TapDetail::Full), 2);
    let mut layers = Vec::new();
    let summary = t
        .fit(
            mnist_subset(),
            100,
            &mut |it: &model_core::train::IterationReport<'_, LeNet>| {
                let trace = it.trace.expect("the tap is on");
                layers.push(
                    trace
                        .layers
                        .iter()
                        .map(|l| l.name.clone())
                        .collect::<Vec<_>>(),
                );
                assert!(trace.layer("data").unwrap().forward_seconds > 0.0);
                if it.iteration == 2 {
                    Control::Stop
                } else {
                    Control::Continue
                }
            },
        )
        .unwrap();
    assert!(summary.stopped_by_hook);
    assert_eq!(summary.iterations, 3);
    assert_eq!(layers.len(), 3);
    assert_eq!(
        layers[0],
        [
            "data", "conv1", "pool1", "conv2", "pool2", "ip1", "ip2", "loss"
        ]
    );
}

struct Poison(Vec<String>);

impl ModuleMapper for Poison {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.0.push(name.into());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.0.pop();
    }
    fn map_float<const D: usize>(&mut self, p: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if self.0.join(".") != "ip1.bias" {
            return p;
        }
        let id = p.id;
        let device = p.lazy_device();
        let shape = p.lazy_shape();
        p.transform_for_load(
            Tensor::<D>::full(shape, f32::INFINITY, &device.inner()).autodiff(),
            id,
        )
    }
}

#[test]
fn a_diverging_run_ends_with_the_iteration_and_the_hook_saw_the_last_trace() {
    let device = Device::flex().autodiff();
    let model = seeded_lenet(&device, 3).map(&mut Poison(vec![]));
    let mut t = Trainer::new(model, sgd(0.01).with_tap(TapDetail::Full), &device);
    let mut last = None;
    let err = t
        .fit(
            mnist_subset(),
            10,
            &mut |it: &model_core::train::IterationReport<'_, LeNet>| {
                last = it.trace.cloned();
                Control::Continue
            },
        )
        .unwrap_err();
    assert!(
        matches!(err, TrainError::Diverged { iteration: 0, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("iteration 0"));
    let trace = last.expect("the hook saw the diverging iteration");
    assert!(trace.layer("pool2").unwrap().data.unwrap().is_finite());
    assert!(!trace.layer("ip1").unwrap().data.unwrap().is_finite());

    // A learning rate far too large diverges too, without a panic.
    let mut t = trainer(
        TrainConfig::new(OptimizerChoice::sgd(0.9), 1e6, Normalization::mnist()),
        4,
    );
    match t.fit(mnist_subset(), 60, &mut Unobserved) {
        Err(TrainError::Diverged { iteration, loss }) => {
            assert!(iteration > 0 && !loss.is_finite())
        }
        other => panic!("expected divergence, got {other:?}"),
    }
}

#[test]
fn an_lr_mult_of_zero_freezes_a_layer() {
    let mut t = trainer(
        sgd(0.05)
            .with_lr_mult(r"^conv1\.", 0.0)
            .with_lr_mult(r"^ip2\.bias$", 2.0),
        5,
    );
    let before = params(t.model());
    losses(&mut t, 3);
    let after = params(t.model());
    assert_eq!(before["conv1.weight"], after["conv1.weight"]);
    assert_eq!(before["conv1.bias"], after["conv1.bias"]);
    assert_ne!(before["conv2.weight"], after["conv2.weight"]);
}

#[test]
fn bias_lr_mult_doubles_the_bias_step_under_plain_sgd() {
    let plain = TrainConfig::new(OptimizerChoice::sgd(0.0), 0.01, Normalization::mnist())
        .with_batch_size(32);
    let mut a = trainer(plain.clone(), 6);
    let mut b = trainer(plain.with_lr_mult(r"\.bias$", 2.0), 6);
    let start = params(a.model());
    assert_eq!(start, params(b.model()));
    losses(&mut a, 1);
    losses(&mut b, 1);
    let (pa, pb) = (params(a.model()), params(b.model()));
    let step = |p: &BTreeMap<String, Vec<f32>>, k: &str| -> Vec<f32> {
        p[k].iter().zip(&start[k]).map(|(x, s)| x - s).collect()
    };
    for (x, y) in step(&pa, "ip2.bias").iter().zip(step(&pb, "ip2.bias")) {
        assert!((2.0 * x - y).abs() <= 1e-6 + 1e-4 * y.abs(), "{x} {y}");
    }
    assert_eq!(step(&pa, "ip2.weight"), step(&pb, "ip2.weight"));
}

#[test]
fn clipping_bounds_the_step() {
    let base = TrainConfig::new(OptimizerChoice::sgd(0.0), 1.0, Normalization::mnist())
        .with_batch_size(32);
    // By norm: with plain SGD and lr 1, the whole step is the clipped gradient.
    let mut t = trainer(base.clone().with_clipping(Some(Clipping::Norm(0.01))), 7);
    let before = params(t.model());
    let mut norm = 0.0;
    t.fit(
        mnist_subset(),
        1,
        &mut |it: &model_core::train::IterationReport<'_, LeNet>| {
            norm = gradient_norm(it.model, it.grads);
            Control::Continue
        },
    )
    .unwrap();
    assert!(
        norm > 0.01,
        "the raw gradient norm {norm} must exceed the threshold for this test to mean anything"
    );
    let after = params(t.model());
    let step: f64 = before
        .keys()
        .map(|k| l2(&before[k], &after[k]))
        .sum::<f64>()
        .sqrt();
    assert!((step - 0.01).abs() < 1e-4, "step norm {step}");

    // By value: no value moves by more than the threshold.
    let mut t = trainer(base.with_clipping(Some(Clipping::Value(1e-3))), 7);
    losses(&mut t, 1);
    let after = params(t.model());
    let largest = before
        .keys()
        .flat_map(|k| {
            before[k]
                .iter()
                .zip(&after[k])
                .map(|(a, b)| (a - b).abs())
                .collect::<Vec<_>>()
        })
        .fold(0f32, f32::max);
    assert!(
        largest <= 1e-3 + 1e-7 && largest > 5e-4,
        "largest move {largest}"
    );
}

#[test]
fn the_loss_weight_scales_every_gradient() {
    let mut norms = Vec::new();
    for weight in [1.0, 4.0] {
        let mut t = trainer(
            sgd(0.01).with_loss_weight(weight).with_tap(TapDetail::Full),
            8,
        );
        t.fit(
            mnist_subset(),
            1,
            &mut |it: &model_core::train::IterationReport<'_, LeNet>| {
                norms.push(gradient_norm(it.model, it.grads));
                let top = it.trace.unwrap().layer("loss").unwrap().diff.unwrap();
                assert_eq!(top.max, weight);
                Control::Continue
            },
        )
        .unwrap();
    }
    assert!((norms[1] / norms[0] - 4.0).abs() < 1e-3, "{norms:?}");
}

#[test]
fn adam_and_rmsprop_train() {
    for optimizer in [OptimizerChoice::adam(), OptimizerChoice::rms_prop()] {
        let mut t = trainer(
            TrainConfig::new(optimizer.clone(), 1e-3, Normalization::mnist()).with_batch_size(32),
            9,
        );
        let seen = losses(&mut t, 30);
        let head: f32 = seen[..5].iter().sum::<f32>() / 5.0;
        let tail: f32 = seen[25..].iter().sum::<f32>() / 5.0;
        assert!(tail < head * 0.7, "{optimizer:?}: {head} -> {tail}");
    }
}

#[test]
fn schedules() {
    assert_eq!(LrSchedule::Fixed.lr(0.1, 1000), 0.1);
    let step = LrSchedule::Step {
        step_size: 10,
        gamma: 0.1,
    };
    assert_eq!(step.lr(1.0, 9), 1.0);
    assert!((step.lr(1.0, 25) - 0.01).abs() < 1e-12);
    let cosine = LrSchedule::Cosine {
        total: 100,
        min_lr: 0.0,
    };
    assert_eq!(cosine.lr(1.0, 0), 1.0);
    assert!((cosine.lr(1.0, 50) - 0.5).abs() < 1e-12);
    assert!(cosine.lr(1.0, 100).abs() < 1e-12);
    assert!(cosine.lr(1.0, 500).abs() < 1e-12);
}

#[test]
fn checkpoints_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = trainer(sgd(0.01).with_checkpoints(dir.path(), 2), 10);
    losses(&mut t, 4);
    let saved = dir.path().join("lenet-iter4.bpk");
    assert!(
        saved.is_file(),
        "{:?}",
        std::fs::read_dir(dir.path()).unwrap().collect::<Vec<_>>()
    );
    let device = Device::flex();
    let loaded = LeNet::mnist(&device).load_file(&saved);
    assert_eq!(params(&loaded), params(t.model()));
    let x = Tensor::<4>::ones([2, 1, 28, 28], &device);
    let a = loaded.forward(x.clone()).try_into_vec_as::<f32>().unwrap();
    let b = t
        .model()
        .valid()
        .forward(x)
        .try_into_vec_as::<f32>()
        .unwrap();
    assert_eq!(a, b);
}

#[test]
fn a_model_that_does_not_fit_the_data_is_a_config_error() {
    let device = Device::flex().autodiff();
    let model = model_core::models::ResNet20::cifar10(&device);
    let mut t = Trainer::new(model, sgd(0.01), &device);
    let err = t.fit(mnist_subset(), 1, &mut Unobserved).unwrap_err();
    assert!(matches!(err, TrainError::Config { .. }), "{err}");
    assert!(err.to_string().contains("3x32x32"), "{err}");
    let mut bad = trainer(sgd(0.01).with_lr_mult("(", 2.0), 1);
    let err = bad.fit(mnist_subset(), 1, &mut Unobserved).unwrap_err();
    assert!(err.to_string().contains("lr_mult"), "{err}");
}
