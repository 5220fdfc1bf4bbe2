//! ResNet-20 for CIFAR-10 (He et al. 2016, section 4.2), as in akamaster/pytorch_resnet_cifar10.

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Initializer, Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::relu;
use burn::tensor::ops::PadMode;
use burn::tensor::s;

use super::Classifier;
use crate::dataset::SampleShape;
use crate::inference::{InferenceNet, InferenceNetBuilder, LowerError, Shortcut};
use crate::tap::Tap;

fn conv3x3(cin: usize, cout: usize, stride: usize, device: &Device) -> Conv2d {
    Conv2dConfig::new([cin, cout], [3, 3])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .with_bias(false)
        .with_initializer(Initializer::KaimingNormal {
            gain: 2f64.sqrt(),
            fan_out_only: false,
        })
        .init(device)
}

/// The basic block: conv 3x3, BN, ReLU, conv 3x3, BN, plus the shortcut, ReLU. Where the shape
/// changes the shortcut is option A: the input subsampled with stride 2 and zero-padded with
/// `planes / 4` channels on each side (no weights).
#[derive(Module, Debug)]
pub struct BasicBlock {
    pub conv1: Conv2d,
    pub bn1: BatchNorm,
    pub conv2: Conv2d,
    pub bn2: BatchNorm,
    stride: usize,
    in_planes: usize,
    planes: usize,
}

impl BasicBlock {
    pub fn new(in_planes: usize, planes: usize, stride: usize, device: &Device) -> Self {
        BasicBlock {
            conv1: conv3x3(in_planes, planes, stride, device),
            bn1: BatchNormConfig::new(planes).init(device),
            conv2: conv3x3(planes, planes, 1, device),
            bn2: BatchNormConfig::new(planes).init(device),
            stride,
            in_planes,
            planes,
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let out = relu(self.bn1.forward(self.conv1.forward(x.clone())));
        let out = self.bn2.forward(self.conv2.forward(out));
        let shortcut = if self.stride != 1 || self.in_planes != self.planes {
            let pad = self.planes / 4;
            x.slice(s![.., .., ..;2, ..;2])
                .pad([(pad, pad), (0, 0), (0, 0)], PadMode::Constant(0.0))
        } else {
            x
        };
        relu(out + shortcut)
    }

    /// The block as inference operations: the input saved, conv1+bn1+ReLU, conv2+bn2 with the
    /// shortcut added, ReLU.
    pub fn lower(
        &self,
        net: InferenceNetBuilder,
        name: &str,
    ) -> Result<InferenceNetBuilder, LowerError> {
        let shortcut = if self.stride != 1 || self.in_planes != self.planes {
            Shortcut::SubsamplePad {
                stride: 2,
                pad: self.planes / 4,
            }
        } else {
            Shortcut::Identity
        };
        net.save()
            .conv(&format!("{name}.conv1"), &self.conv1, Some(&self.bn1), true)?
            .conv_residual(
                &format!("{name}.conv2"),
                &self.conv2,
                Some(&self.bn2),
                shortcut,
                true,
            )
    }
}

/// ResNet-20: conv1 (16 3x3) + BN + ReLU, three stages of three basic blocks (16, 32, 64
/// planes; stride 2 entering the second and third), global average pooling, `linear` (classes).
/// 269,722 parameters (0.27M, as in the paper) for 10 classes.
///
/// Parameter paths are those of the published PyTorch model (`conv1.weight`, `bn1.*`,
/// `layer{1,2,3}.{0,1,2}.{conv,bn}{1,2}.*`, `linear.*`), with Burn's `gamma`/`beta` for batch
/// norm's `weight`/`bias` (burn-store's PyTorch adapter maps them).
///
/// Traced layers: `conv1` (with `bn1` and the ReLU), `layer1.0` ... `layer3.2` (one per block),
/// `pool`, `linear`.
#[derive(Module, Debug)]
pub struct ResNet20 {
    pub conv1: Conv2d,
    pub bn1: BatchNorm,
    pub layer1: Vec<BasicBlock>,
    pub layer2: Vec<BasicBlock>,
    pub layer3: Vec<BasicBlock>,
    pub linear: Linear,
    input: [usize; 3],
    classes: usize,
}

impl ResNet20 {
    /// ResNet-20 for `input` images (CIFAR-10: 3x32x32) and `classes` labels, on `device`.
    pub fn new(input: SampleShape, classes: usize, device: &Device) -> Self {
        let stage = |cin: usize, planes: usize, stride: usize| -> Vec<BasicBlock> {
            (0..3)
                .map(|i| {
                    if i == 0 {
                        BasicBlock::new(cin, planes, stride, device)
                    } else {
                        BasicBlock::new(planes, planes, 1, device)
                    }
                })
                .collect()
        };
        ResNet20 {
            conv1: conv3x3(input.channels, 16, 1, device),
            bn1: BatchNormConfig::new(16).init(device),
            layer1: stage(16, 16, 1),
            layer2: stage(16, 32, 2),
            layer3: stage(32, 64, 2),
            linear: LinearConfig::new(64, classes)
                .with_initializer(Initializer::KaimingNormal {
                    gain: 2f64.sqrt(),
                    fan_out_only: false,
                })
                .init(device),
            input: [input.channels, input.height, input.width],
            classes,
        }
    }

    /// ResNet-20 for CIFAR-10 (3x32x32, 10 classes).
    pub fn cifar10(device: &Device) -> Self {
        ResNet20::new(
            SampleShape {
                channels: 3,
                height: 32,
                width: 32,
            },
            10,
            device,
        )
    }
}

impl Classifier for ResNet20 {
    fn forward_tapped(&self, images: Tensor<4>, tap: &mut Tap) -> Tensor<2> {
        let mut x = tap.layer_owning(
            "conv1",
            "Convolution+BatchNorm+ReLU",
            &["conv1", "bn1"],
            images,
            |x| relu(self.bn1.forward(self.conv1.forward(x))),
        );
        for (stage, blocks) in [
            ("layer1", &self.layer1),
            ("layer2", &self.layer2),
            ("layer3", &self.layer3),
        ] {
            for (i, block) in blocks.iter().enumerate() {
                x = tap.layer(&format!("{stage}.{i}"), "BasicBlock", x, |x| {
                    block.forward(x)
                });
            }
        }
        let x = tap.layer("pool", "Pooling", x, |x| {
            x.mean_dims(&[2, 3]).flatten::<2>(1, 3)
        });
        tap.layer("linear", "InnerProduct", x, |x| self.linear.forward(x))
    }

    fn inference_net(&self) -> Result<InferenceNet, LowerError> {
        let mut net = InferenceNet::builder(self.input_shape()).conv(
            "conv1",
            &self.conv1,
            Some(&self.bn1),
            true,
        )?;
        for (stage, blocks) in [
            ("layer1", &self.layer1),
            ("layer2", &self.layer2),
            ("layer3", &self.layer3),
        ] {
            for (i, block) in blocks.iter().enumerate() {
                net = block.lower(net, &format!("{stage}.{i}"))?;
            }
        }
        net.global_avg_pool("pool")?
            .linear("linear", &self.linear, false)?
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
        "resnet20"
    }
}
