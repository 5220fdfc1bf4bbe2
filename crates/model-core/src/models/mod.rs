//! Reference models, each a Burn module whose forward routes every layer through the [`Tap`].
//!
//! - [`LeNet`]: Caffe's LeNet for MNIST (conv 20 5x5, pool, conv 50 5x5, pool, ip 500, ReLU, ip 10).
//! - [`ResNet20`]: He et al. 2016's CIFAR-10 ResNet-20 with option-A shortcuts; its parameter
//!   paths match the published PyTorch weights (`conv1.weight`, `layer2.0.bn1.running_mean`, ...).
//! - [`AlexNet`]: Krizhevsky et al. 2012 (96 11x11 conv1 filters), for timings and weight
//!   pictures at a realistic size; not trained here.
//!
//! Every model implements [`Classifier`]: images `[batch, channels, height, width]` in, logits
//! `[batch, classes]` out. A user's own model joins the checklist by implementing it too.

mod alexnet;
mod lenet;
mod resnet;
mod weights;

use std::fmt;
use std::str::FromStr;

use burn::module::Module;
use burn::prelude::*;
use serde::{Deserialize, Serialize};

pub use alexnet::AlexNet;
pub use lenet::LeNet;
pub use resnet::{BasicBlock, ResNet20};
pub use weights::{ImportError, ImportOutcome, PytorchImport, import_pytorch};

use crate::dataset::SampleShape;
use crate::inference::{InferenceNet, LowerError};
use crate::tap::Tap;

/// An image classifier whose forward pass goes through a [`Tap`].
pub trait Classifier: Module + Clone + fmt::Debug + Send + 'static {
    /// Logits `[batch, classes]` for `images` `[batch, c, h, w]`, each layer routed through `tap`.
    fn forward_tapped(&self, images: Tensor<4>, tap: &mut Tap) -> Tensor<2>;

    /// The plain forward (the tap off).
    fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        self.forward_tapped(images, &mut Tap::off())
    }

    /// The model lowered for batched CPU inference ([`crate::inference`]), or why it cannot be.
    /// The default declines: a user's model keeps Burn's forward everywhere.
    fn inference_net(&self) -> Result<InferenceNet, LowerError> {
        Err(LowerError::Unsupported {
            layer: self.name().to_string(),
            what: "a model that does not describe itself for inference".into(),
        })
    }

    /// The shape of one input image.
    fn input_shape(&self) -> SampleShape;

    /// The number of classes (logits per image).
    fn num_classes(&self) -> usize;

    /// A short name (`lenet`, `resnet20`, `alexnet`).
    fn name(&self) -> &str;
}

/// The reference models by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    LeNet,
    ResNet20,
    AlexNet,
}

impl ModelKind {
    pub const ALL: [ModelKind; 3] = [ModelKind::LeNet, ModelKind::ResNet20, ModelKind::AlexNet];

    pub fn name(&self) -> &'static str {
        match self {
            ModelKind::LeNet => "lenet",
            ModelKind::ResNet20 => "resnet20",
            ModelKind::AlexNet => "alexnet",
        }
    }
}

impl fmt::Display for ModelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ModelKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ModelKind::ALL
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                format!("unknown model `{s}`; expected one of: lenet, resnet20, alexnet")
            })
    }
}

/// Sets a bias parameter to zeros (Caffe's `constant` bias filler), keeping its id and device.
pub(crate) fn zero_bias(
    bias: Option<burn::module::Param<Tensor<1>>>,
) -> Option<burn::module::Param<Tensor<1>>> {
    bias.map(|p| {
        let id = p.id;
        let device = p.lazy_device();
        let len = p.lazy_shape().num_elements();
        p.transform_for_load(Tensor::zeros([len], &device), id)
    })
}

/// Draws every lazily initialised parameter of `model` now, so that the seed set just before its
/// construction decides its values whatever else draws random numbers later.
pub fn materialize<M: Module>(model: &M) {
    struct Draw;
    impl burn::module::ModuleVisitor for Draw {
        fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
            let _ = param.val();
        }
    }
    model.visit(&mut Draw);
}

/// Writes NaN into the first value of every float parameter of `model` whose module path
/// (`conv2.weight`) satisfies `matches`, keeping each parameter's id, device and gradient
/// requirement: the planted-NaN fault. Returns the model and how many parameters were hit.
pub fn plant_nan<M: Module>(model: M, matches: impl Fn(&str) -> bool) -> (M, usize) {
    struct Plant<F> {
        stack: Vec<String>,
        matches: F,
        planted: usize,
    }
    impl<F: Fn(&str) -> bool> burn::module::ModuleMapper for Plant<F> {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.stack.push(name.into());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.stack.pop();
        }
        fn map_float<const D: usize>(
            &mut self,
            p: burn::module::Param<Tensor<D>>,
        ) -> burn::module::Param<Tensor<D>> {
            if !(self.matches)(&self.stack.join(".")) {
                return p;
            }
            let id = p.id;
            let value = p.val();
            let autodiff = value.is_autodiff();
            let Ok(mut values) = value.inner().try_into_vec_as::<f32>() else {
                return p;
            };
            let Some(first) = values.first_mut() else {
                return p;
            };
            *first = f32::NAN;
            let fresh = Tensor::<D>::from_data(
                TensorData::new(values, p.lazy_shape()),
                &p.lazy_device().inner(),
            );
            self.planted += 1;
            p.transform_for_load(if autodiff { fresh.autodiff() } else { fresh }, id)
        }
    }
    let mut plant = Plant {
        stack: Vec::new(),
        matches,
        planted: 0,
    };
    let model = model.map(&mut plant);
    (model, plant.planted)
}

/// Builds a model with `make` on `device` seeded with `seed`, every parameter drawn at once
/// ([`materialize`]) under a process-wide lock: flex's random generator is global to the
/// process, so without the lock another thread drawing at the same time would change the
/// weights. The same seed gives the same model.
pub fn build_seeded<M: Module>(device: &Device, seed: u64, make: impl FnOnce(&Device) -> M) -> M {
    static RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = RNG.lock().unwrap_or_else(|e| e.into_inner());
    device.seed(seed);
    let model = make(device);
    materialize(&model);
    model
}
