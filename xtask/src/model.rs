//! The model a checklist run uses: one of the reference models, chosen by name or by the
//! dataset, optionally with imported PyTorch weights.

use std::path::Path;

use burn::prelude::*;
use model_core::models::{
    AlexNet, Classifier, ImportOutcome, LeNet, ModelKind, PytorchImport, ResNet20, build_seeded,
    import_pytorch,
};
use model_core::{Dataset, SampleShape};

use crate::checklist::RunError;

/// One of the reference models.
#[derive(Debug, Clone)]
pub enum RunModel {
    LeNet(LeNet),
    ResNet20(ResNet20),
    AlexNet(AlexNet),
}

/// Calls `$body` with `$m` bound to the concrete model (`impl Classifier`).
#[macro_export]
macro_rules! with_model {
    ($model:expr, $m:ident => $body:expr) => {
        match $model {
            $crate::model::RunModel::LeNet($m) => $body,
            $crate::model::RunModel::ResNet20($m) => $body,
            $crate::model::RunModel::AlexNet($m) => $body,
        }
    };
}

/// The default model for a dataset: LeNet for one-channel images (MNIST), ResNet-20 otherwise.
pub fn default_kind(shape: SampleShape) -> ModelKind {
    if shape.channels == 1 {
        ModelKind::LeNet
    } else {
        ModelKind::ResNet20
    }
}

/// Builds `kind` for `dataset` on `device` (seeded), checking that the images fit it.
pub fn build(
    kind: ModelKind,
    dataset: &Dataset,
    device: &Device,
    seed: u64,
) -> Result<RunModel, RunError> {
    let shape = dataset.shape();
    let classes = dataset.class_names().len();
    let unfit = |why: String| {
        RunError::Usage(format!(
            "--model {kind} does not fit dataset `{}`: {why}",
            dataset.name()
        ))
    };
    let model = match kind {
        ModelKind::LeNet => {
            if shape.height < 16 || shape.width < 16 {
                return Err(unfit(format!(
                    "LeNet needs images of at least 16x16; these are {shape}"
                )));
            }
            RunModel::LeNet(build_seeded(device, seed, |d| {
                LeNet::new(shape, classes, d)
            }))
        }
        ModelKind::ResNet20 => {
            if shape.height < 4 || shape.width < 4 {
                return Err(unfit(format!(
                    "ResNet-20 needs images of at least 4x4; these are {shape}"
                )));
            }
            RunModel::ResNet20(build_seeded(device, seed, |d| {
                ResNet20::new(shape, classes, d)
            }))
        }
        ModelKind::AlexNet => {
            let want = SampleShape {
                channels: 3,
                height: 224,
                width: 224,
            };
            if shape != want {
                return Err(unfit(format!(
                    "AlexNet takes {want} images; these are {shape}"
                )));
            }
            RunModel::AlexNet(build_seeded(device, seed, |d| AlexNet::new(classes, d)))
        }
    };
    Ok(model)
}

impl From<LeNet> for RunModel {
    fn from(m: LeNet) -> Self {
        RunModel::LeNet(m)
    }
}

impl From<ResNet20> for RunModel {
    fn from(m: ResNet20) -> Self {
        RunModel::ResNet20(m)
    }
}

impl From<AlexNet> for RunModel {
    fn from(m: AlexNet) -> Self {
        RunModel::AlexNet(m)
    }
}

impl RunModel {
    pub fn name(&self) -> String {
        with_model!(self, m => m.name().to_string())
    }

    /// Imports PyTorch weights by parameter name: a `{'state_dict': {'module.…'}}` checkpoint
    /// (DataParallel) or a plain state dict.
    pub fn import(&mut self, path: &Path) -> Result<ImportOutcome, RunError> {
        let format = weight_check::WeightFormat::for_path(path, PytorchImport::plain());
        if !matches!(format, weight_check::WeightFormat::Pytorch(_)) {
            // Burnpack and SafeTensors files: keys are the model's (SafeTensors in PyTorch's layout).
            let outcome = with_model!(self, m => format.load_into(m, path))
                .map_err(|e| RunError::Usage(e.to_string()))?;
            if outcome.applied.is_empty() {
                return Err(RunError::Usage(format!(
                    "{}: no tensor in the file matches a parameter of {}",
                    path.display(),
                    self.name()
                )));
            }
            return Ok(outcome);
        }
        let attempt = |model: &mut RunModel, import: &PytorchImport| with_model!(model, m => import_pytorch(m, path, import));
        let first = attempt(self, &PytorchImport::data_parallel_checkpoint());
        let outcome = match first {
            Ok(outcome) => outcome,
            Err(_) => attempt(self, &PytorchImport::plain())
                .map_err(|e| RunError::Usage(e.to_string()))?,
        };
        if outcome.applied.is_empty() {
            return Err(RunError::Usage(format!(
                "{}: no tensor in the file matches a parameter of {}",
                path.display(),
                self.name()
            )));
        }
        Ok(outcome)
    }
}
