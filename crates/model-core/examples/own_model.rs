//! A model defined outside model-core joins the checklist's instrumentation by routing its
//! layers through the [`Tap`] and implementing [`Classifier`]; then the [`Trainer`] trains it
//! and every iteration's trace (per-layer times, `data` and `diff` ranges) is there to read.
//!
//! Run: `cargo run -p model-core --example own_model`

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::relu;
use model_core::bundled::{self, MnistSplit};
use model_core::models::Classifier;
use model_core::tap::{Tap, TapDetail};
use model_core::train::{Control, IterationReport, OptimizerChoice, TrainConfig, Trainer};
use model_core::{LoadOptions, Normalization, SampleShape};

/// A small all-convolutional MNIST classifier, the user's own.
#[derive(Module, Debug)]
struct TinyConvNet {
    conv_a: Conv2d,
    conv_b: Conv2d,
    classifier: Linear,
}

impl TinyConvNet {
    fn new(device: &Device) -> Self {
        let conv = |cin, cout| {
            Conv2dConfig::new([cin, cout], [3, 3])
                .with_stride([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(device)
        };
        TinyConvNet {
            conv_a: conv(1, 8),
            conv_b: conv(8, 16),
            classifier: LinearConfig::new(16 * 7 * 7, 10).init(device),
        }
    }
}

impl Classifier for TinyConvNet {
    fn forward_tapped(&self, images: Tensor<4>, tap: &mut Tap) -> Tensor<2> {
        // One line per layer: the tap times it and reads its data and diff when it is on, and
        // is the plain forward when it is off.
        let x = tap.layer("conv_a", "Convolution+ReLU", images, |x| {
            relu(self.conv_a.forward(x))
        });
        let x = tap.layer("conv_b", "Convolution+ReLU", x, |x| {
            relu(self.conv_b.forward(x))
        });
        tap.layer("classifier", "InnerProduct", x, |x| {
            self.classifier.forward(x.flatten::<2>(1, 3))
        })
    }

    fn input_shape(&self) -> SampleShape {
        SampleShape::new(1, 28, 28)
    }

    fn num_classes(&self) -> usize {
        10
    }

    fn name(&self) -> &str {
        "tiny-conv-net"
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let options = LoadOptions::default().with_cache(bundled::workspace_cache());
    let train = bundled::mnist(MnistSplit::Train, &options)?.stratified_subset(6_400, 1)?;
    let test = bundled::mnist(MnistSplit::Test, &options)?.stratified_subset(2_000, 1)?;

    let device = Device::flex().autodiff();
    device.seed(1);
    let config = TrainConfig::new(OptimizerChoice::sgd(0.9), 0.02, Normalization::mnist())
        .with_tap(TapDetail::Full);
    let mut trainer = Trainer::new(TinyConvNet::new(&device), config, &device);

    let mut hook = |it: &IterationReport<'_, TinyConvNet>| {
        if it.iteration.is_multiple_of(25)
            && let Some(trace) = it.trace
        {
            println!("iteration {:>3}  loss {:.4}", it.iteration, it.loss);
            for layer in &trace.layers {
                let (data, diff) = (
                    layer.data.map(|s| s.mean_abs),
                    layer.diff.map(|s| s.mean_abs),
                );
                println!(
                    "  {:<11} {:<18} fwd {:>7.3} ms  bwd {:>7.3} ms  |data| {:>9.3e}  |diff| {:>9.3e}",
                    layer.name,
                    layer.kind,
                    1e3 * layer.forward_seconds,
                    1e3 * layer.backward_seconds,
                    data.unwrap_or(f32::NAN),
                    diff.unwrap_or(f32::NAN)
                );
            }
        }
        Control::Continue
    };
    let summary = trainer.fit(&train, 100, &mut hook)?;
    let eval = trainer.evaluate(&test)?;
    println!(
        "trained {} iterations in {:.1} s; held-out accuracy {:.1}% on {} images",
        summary.iterations,
        summary.seconds,
        100.0 * eval.accuracy,
        eval.images
    );
    Ok(())
}
