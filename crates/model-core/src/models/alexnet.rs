//! AlexNet (Krizhevsky, Sutskever and Hinton 2012), as in Caffe's bvlc_alexnet, without local
//! response normalisation (which Burn lacks and later work dropped).

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Dropout, DropoutConfig, Initializer, Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::relu;

use super::{Classifier, zero_bias};
use crate::dataset::SampleShape;
use crate::inference::{InferenceNet, LowerError};
use crate::tap::Tap;

/// AlexNet for 3x224x224 images: conv1 96 11x11 stride 4 (padded by 2, as torchvision's, so that
/// 224x224 gives Caffe's 55x55), pool 3x3/2, conv2 256 5x5 (2 groups, as the original's two GPUs),
/// pool, conv3 384 3x3, conv4 384 3x3 (2 groups), conv5 256 3x3 (2 groups), pool, fc6 4096, fc7
/// 4096 (ReLU and dropout 0.5 after each), fc8 (classes). Weights from Gaussians (std 0.01 for the
/// convolutions, 0.005 for the inner products), biases zero.
///
/// Traced layers: `conv1` ... `conv5` (each with its ReLU), `pool1`, `pool2`, `pool5`, `fc6` and
/// `fc7` (with ReLU and dropout), `fc8`.
#[derive(Module, Debug)]
pub struct AlexNet {
    pub conv1: Conv2d,
    pub pool1: MaxPool2d,
    pub conv2: Conv2d,
    pub pool2: MaxPool2d,
    pub conv3: Conv2d,
    pub conv4: Conv2d,
    pub conv5: Conv2d,
    pub pool5: MaxPool2d,
    pub fc6: Linear,
    pub drop6: Dropout,
    pub fc7: Linear,
    pub drop7: Dropout,
    pub fc8: Linear,
    input: [usize; 3],
    classes: usize,
}

impl AlexNet {
    /// AlexNet for 3x224x224 images and `classes` labels.
    pub fn new(classes: usize, device: &Device) -> Self {
        let gaussian = |std| Initializer::Normal { mean: 0.0, std };
        let conv = |cin, cout, k, stride, pad, groups| {
            let mut c = Conv2dConfig::new([cin, cout], [k, k])
                .with_stride([stride, stride])
                .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
                .with_groups(groups)
                .with_initializer(gaussian(0.01))
                .init(device);
            c.bias = zero_bias(c.bias);
            c
        };
        let linear = |din, dout| {
            let mut l = LinearConfig::new(din, dout)
                .with_initializer(gaussian(0.005))
                .init(device);
            l.bias = zero_bias(l.bias);
            l
        };
        let pool = || MaxPool2dConfig::new([3, 3]).with_strides([2, 2]).init();
        AlexNet {
            conv1: conv(3, 96, 11, 4, 2, 1),
            pool1: pool(),
            conv2: conv(96, 256, 5, 1, 2, 2),
            pool2: pool(),
            conv3: conv(256, 384, 3, 1, 1, 1),
            conv4: conv(384, 384, 3, 1, 1, 2),
            conv5: conv(384, 256, 3, 1, 1, 2),
            pool5: pool(),
            fc6: linear(256 * 6 * 6, 4096),
            drop6: DropoutConfig::new(0.5).init(),
            fc7: linear(4096, 4096),
            drop7: DropoutConfig::new(0.5).init(),
            fc8: linear(4096, classes),
            input: [3, 224, 224],
            classes,
        }
    }
}

impl Classifier for AlexNet {
    fn forward_tapped(&self, images: Tensor<4>, tap: &mut Tap) -> Tensor<2> {
        let x = tap.layer("conv1", "Convolution+ReLU", images, |x| {
            relu(self.conv1.forward(x))
        });
        let x = tap.layer("pool1", "Pooling", x, |x| self.pool1.forward(x));
        let x = tap.layer("conv2", "Convolution+ReLU", x, |x| {
            relu(self.conv2.forward(x))
        });
        let x = tap.layer("pool2", "Pooling", x, |x| self.pool2.forward(x));
        let x = tap.layer("conv3", "Convolution+ReLU", x, |x| {
            relu(self.conv3.forward(x))
        });
        let x = tap.layer("conv4", "Convolution+ReLU", x, |x| {
            relu(self.conv4.forward(x))
        });
        let x = tap.layer("conv5", "Convolution+ReLU", x, |x| {
            relu(self.conv5.forward(x))
        });
        let x = tap.layer("pool5", "Pooling", x, |x| self.pool5.forward(x));
        let x = tap.layer_owning(
            "fc6",
            "InnerProduct+ReLU+Dropout",
            &["fc6", "drop6"],
            x,
            |x| {
                self.drop6
                    .forward(relu(self.fc6.forward(x.flatten::<2>(1, 3))))
            },
        );
        let x = tap.layer_owning(
            "fc7",
            "InnerProduct+ReLU+Dropout",
            &["fc7", "drop7"],
            x,
            |x| self.drop7.forward(relu(self.fc7.forward(x))),
        );
        tap.layer("fc8", "InnerProduct", x, |x| self.fc8.forward(x))
    }

    /// conv2, conv4 and conv5 are grouped (two groups, as in the paper): each group is its own
    /// product over its half of the channels.
    fn inference_net(&self) -> Result<InferenceNet, LowerError> {
        // Dropout is the identity at inference.
        InferenceNet::builder(self.input_shape())
            .conv("conv1", &self.conv1, None, true)?
            .max_pool("pool1", &self.pool1)?
            .conv("conv2", &self.conv2, None, true)?
            .max_pool("pool2", &self.pool2)?
            .conv("conv3", &self.conv3, None, true)?
            .conv("conv4", &self.conv4, None, true)?
            .conv("conv5", &self.conv5, None, true)?
            .max_pool("pool5", &self.pool5)?
            .linear("fc6", &self.fc6, true)?
            .linear("fc7", &self.fc7, true)?
            .linear("fc8", &self.fc8, false)?
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
        "alexnet"
    }
}
