//! Planted faults on real MNIST, each caught with the right verdict and layer; a healthy run of
//! the same length raises nothing.

use burn::module::Module;
use burn::prelude::*;
use grad_monitor::{GradMonitor, MonitorConfig};
use model_core::bundled::{self, MnistSplit};
use model_core::models::{LeNet, build_seeded, plant_nan};
use model_core::tap::TapDetail;
use model_core::train::{
    Control, IterationReport, OptimizerChoice, TrainConfig, TrainHook, Trainer,
};
use model_core::{Dataset, Finding, LoadOptions, Normalization, Verdict};

const ITERATIONS: usize = 60;

fn mnist() -> Dataset {
    bundled::mnist(
        MnistSplit::Train,
        &LoadOptions::default().with_cache(bundled::workspace_cache()),
    )
    .unwrap()
    .stratified_subset(4_000, 1)
    .unwrap()
}

fn lenet(seed: u64) -> LeNet {
    build_seeded(&Device::flex(), seed, LeNet::mnist)
}

fn watch(
    config: TrainConfig,
    model: LeNet,
    hook_extra: &mut dyn FnMut(usize, &mut Option<LeNet>),
) -> (GradMonitor, Vec<Finding>) {
    let device = Device::flex().autodiff();
    let config = config.with_tap(TapDetail::Full);
    let mut monitor = GradMonitor::new(MonitorConfig::default(), &config.lr_mults);
    let mut trainer = Trainer::new(model, config, &device);
    let data = mnist();
    let batcher = trainer.batcher().clone();
    let plan = batcher.plan(data.len(), 0);
    for i in 0..ITERATIONS {
        let mut replace = None;
        hook_extra(i, &mut replace);
        if let Some(m) = replace {
            trainer = Trainer::new(m, trainer.config().clone(), &device);
        }
        let batch = batcher.assemble(&data, &plan[i % plan.len()]).unwrap();
        let mut adapter = Adapter(&mut monitor, i);
        match trainer.step(&batch, 0.0, 0, &mut adapter) {
            Ok(_) => {}
            Err(_) => break,
        }
    }
    let findings = monitor.findings();
    for f in &findings {
        eprintln!(
            "{:?} {} {}: {} | {}",
            f.verdict, f.check, f.subject, f.message, f.remedy
        );
    }
    (monitor, findings)
}

/// The trainer's own iteration counter restarts when a model is swapped in; keep the real one.
struct Adapter<'a>(&'a mut GradMonitor, usize);

impl TrainHook<LeNet> for Adapter<'_> {
    fn on_iteration(&mut self, report: &IterationReport<'_, LeNet>) -> Control {
        if let Some(trace) = report.trace {
            self.0.observe(self.1, report.loss, report.lr, trace);
        }
        Control::Continue
    }
}

fn sgd(lr: f64) -> TrainConfig {
    TrainConfig::new(OptimizerChoice::sgd(0.9), lr, Normalization::mnist())
}

#[test]
fn a_healthy_run_raises_nothing() {
    let (monitor, findings) = watch(sgd(0.01), lenet(1), &mut |_, _| {});
    assert_eq!(monitor.samples.len(), ITERATIONS);
    assert!(
        findings.iter().all(|f| f.verdict == Verdict::Pass),
        "{findings:?}"
    );
}

#[test]
fn a_learning_rate_100x_too_high_is_caught() {
    let (_, findings) = watch(sgd(1.0), lenet(2), &mut |_, _| {});
    assert!(
        findings.iter().any(|f| f.verdict == Verdict::Fail
            && (f.check == "exploding" || f.check == "nonfinite" || f.check == "imbalance")),
        "{findings:?}"
    );
}

#[test]
fn a_nan_planted_mid_run_is_found_in_its_layer() {
    let base = lenet(3);
    let (monitor, findings) = watch(sgd(0.01), base.clone(), &mut |i, replace| {
        if i == 20 {
            let (model, planted) = plant_nan(base.clone(), |path| path == "conv2.weight");
            assert_eq!(planted, 1);
            *replace = Some(model);
        }
    });
    let nonfinite = findings
        .iter()
        .find(|f| f.check == "nonfinite")
        .expect("found");
    assert_eq!(nonfinite.subject, "conv2");
    assert_eq!(nonfinite.measured, 20.0);
    assert_eq!(monitor.first_nonfinite().unwrap().iteration, 20);
}

#[test]
fn an_oversized_bias_multiplier_is_an_imbalance_and_the_remedy_clears_it() {
    let (_, findings) = watch(
        sgd(0.01).with_lr_mult(r"^conv1\.bias$", 300.0),
        lenet(4),
        &mut |_, _| {},
    );
    let imbalance = findings
        .iter()
        .find(|f| f.check == "imbalance")
        .expect("imbalance found");
    assert_eq!(imbalance.subject, "conv1.bias");
    // The remedy names a multiplier; applied, the verdict clears.
    let suggested: f64 = imbalance
        .remedy
        .split("multiplier to ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let (_, findings) = watch(
        sgd(0.01).with_lr_mult(r"^conv1\.bias$", suggested),
        lenet(4),
        &mut |_, _| {},
    );
    assert!(
        !findings
            .iter()
            .any(|f| f.check == "imbalance" && f.subject == "conv1.bias"),
        "{findings:?}"
    );
}

/// A deep plain network with sigmoid activations: the gradient fades on its way down, and the
/// early layers are named as vanishing.
#[test]
fn a_deep_sigmoid_network_vanishes_in_its_early_layers() {
    use burn::nn::{Linear, LinearConfig};
    use burn::tensor::activation::sigmoid;
    use model_core::models::Classifier;
    use model_core::tap::Tap;

    #[derive(Module, Debug)]
    struct DeepSigmoid {
        layers: Vec<Linear>,
    }
    impl Classifier for DeepSigmoid {
        fn forward_tapped(&self, images: Tensor<4>, tap: &mut Tap) -> Tensor<2> {
            let mut x = images.flatten::<2>(1, 3);
            let last = self.layers.len() - 1;
            for (i, layer) in self.layers.iter().enumerate() {
                let name = format!("layers.{i}");
                x = if i == last {
                    tap.layer(&name, "InnerProduct", x, |x| layer.forward(x))
                } else {
                    tap.layer(&name, "InnerProduct+Sigmoid", x, |x| {
                        sigmoid(layer.forward(x))
                    })
                };
            }
            x
        }
        fn input_shape(&self) -> model_core::SampleShape {
            model_core::SampleShape::new(1, 28, 28)
        }
        fn num_classes(&self) -> usize {
            10
        }
        fn name(&self) -> &str {
            "deep-sigmoid"
        }
    }

    let device = Device::flex().autodiff();
    device.seed(5);
    let widths = [784, 64, 64, 64, 64, 64, 64, 64, 64, 64, 10];
    let model = DeepSigmoid {
        layers: widths
            .windows(2)
            .map(|w| LinearConfig::new(w[0], w[1]).init(&device))
            .collect(),
    };
    let config = TrainConfig::new(OptimizerChoice::sgd(0.9), 0.01, Normalization::mnist())
        .with_tap(TapDetail::Full);
    let mut monitor = GradMonitor::new(MonitorConfig::default(), &[]);
    let mut trainer = Trainer::new(model, config, &device);
    trainer.fit(&mnist(), 40, &mut monitor).unwrap();
    let findings = monitor.findings();
    for f in &findings {
        eprintln!("{:?} {} {}: {}", f.verdict, f.check, f.subject, f.message);
    }
    let vanishing: Vec<&str> = findings
        .iter()
        .filter(|f| f.check == "vanishing")
        .map(|f| f.subject.as_str())
        .collect();
    assert!(vanishing.contains(&"layers.0.weight"), "{findings:?}");
    assert!(
        !vanishing.iter().any(|s| s.starts_with("layers.9.")),
        "the last layer still learns: {vanishing:?}"
    );
}
