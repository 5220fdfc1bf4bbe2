//! Caffe's LeNet (examples/mnist/lenet_train_test.prototxt).

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::relu;

use super::{Classifier, zero_bias};
use crate::dataset::SampleShape;
use crate::inference::{InferenceNet, LowerError};
use crate::tap::Tap;

/// LeNet as in Caffe's MNIST example: conv1 (20 5x5), pool1 (max 2x2/2), conv2 (50 5x5), pool2,
/// ip1 (500) with ReLU, ip2 (classes). Weights use Caffe's `xavier` filler (uniform in
/// `±sqrt(3 / fan_in)`), biases start at zero.
///
/// Traced layers: `conv1`, `pool1`, `conv2`, `pool2`, `ip1` (inner product and its in-place ReLU,
/// one blob as in Caffe), `ip2`.
#[derive(Module, Debug)]
pub struct LeNet {
    pub conv1: Conv2d,
    pub pool1: MaxPool2d,
    pub conv2: Conv2d,
    pub pool2: MaxPool2d,
    pub ip1: Linear,
    pub ip2: Linear,
    input: [usize; 3],
    classes: usize,
}

impl LeNet {
    /// LeNet for `input` images (MNIST: 1x28x28) and `classes` labels, on `device`.
    pub fn new(input: SampleShape, classes: usize, device: &Device) -> Self {
        let xavier = Initializer::KaimingUniform {
            gain: 1.0,
            fan_out_only: false,
        };
        let conv = |cin, cout| {
            let mut c = Conv2dConfig::new([cin, cout], [5, 5])
                .with_initializer(xavier.clone())
                .init(device);
            c.bias = zero_bias(c.bias);
            c
        };
        let linear = |din, dout| {
            let mut l = LinearConfig::new(din, dout)
                .with_initializer(xavier.clone())
                .init(device);
            l.bias = zero_bias(l.bias);
            l
        };
        let side = |s: usize| (s.saturating_sub(4) / 2).saturating_sub(4) / 2;
        let flat = 50 * side(input.height) * side(input.width);
        LeNet {
            conv1: conv(input.channels, 20),
            pool1: MaxPool2dConfig::new([2, 2]).init(),
            conv2: conv(20, 50),
            pool2: MaxPool2dConfig::new([2, 2]).init(),
            ip1: linear(flat, 500),
            ip2: linear(500, classes),
            input: [input.channels, input.height, input.width],
            classes,
        }
    }

    /// LeNet for MNIST (1x28x28, 10 classes).
    pub fn mnist(device: &Device) -> Self {
        LeNet::new(
            SampleShape {
                channels: 1,
                height: 28,
                width: 28,
            },
            10,
            device,
        )
    }
}

impl Classifier for LeNet {
    fn forward_tapped(&self, images: Tensor<4>, tap: &mut Tap) -> Tensor<2> {
        let x = tap.layer("conv1", "Convolution", images, |x| self.conv1.forward(x));
        let x = tap.layer("pool1", "Pooling", x, |x| self.pool1.forward(x));
        let x = tap.layer("conv2", "Convolution", x, |x| self.conv2.forward(x));
        let x = tap.layer("pool2", "Pooling", x, |x| self.pool2.forward(x));
        let x = tap.layer("ip1", "InnerProduct+ReLU", x, |x| {
            relu(self.ip1.forward(x.flatten::<2>(1, 3)))
        });
        tap.layer("ip2", "InnerProduct", x, |x| self.ip2.forward(x))
    }

    fn inference_net(&self) -> Result<InferenceNet, LowerError> {
        InferenceNet::builder(self.input_shape())
            .conv("conv1", &self.conv1, None, false)?
            .max_pool("pool1", &self.pool1)?
            .conv("conv2", &self.conv2, None, false)?
            .max_pool("pool2", &self.pool2)?
            .linear("ip1", &self.ip1, true)?
            .linear("ip2", &self.ip2, false)?
            .build()
    }

    fn input_shape(&self) -> SampleShape {
        SampleShape {
            channels: self.input[0],
            height: self.input[1],
            width: self.input[2],
        }
    }

    fn num_classes(&self) -> usize {
        self.classes
    }

    fn name(&self) -> &str {
        "lenet"
    }
}
