//! The shared vocabulary of nn-checklist.
//!
//! Every step crate (`data-check`, `weight-check`, `profiler`, `grad-monitor`, `impact`) depends
//! on this crate and on no other step, so they all speak the same types:
//!
//! - the data layer: readers for MNIST IDX ([`idx`]), CIFAR-10 binary ([`cifar`]) and image
//!   folders ([`image_folder`]), each returning a typed [`DataError`] for malformed input; the
//!   [`Dataset`] they produce; the [`LoadStrategy`] that decides when pixels are read; the
//!   [`Batcher`] that turns samples into Burn tensors;
//! - the report vocabulary ([`report`]): [`Verdict`], [`Finding`], [`StepReport`], [`Report`],
//!   written atomically;
//! - the engine of steps 2 to 5: the reference [`models`] (LeNet, ResNet-20, AlexNet) behind the
//!   [`models::Classifier`] trait, the [`tap::Tap`] that times every layer and reads its `data`
//!   and `diff`, and the [`train::Trainer`]; the batched CPU [`inference`] path that occlusion and
//!   evaluation take;
//! - the bundled real data ([`bundled`]) and a checksum-verified [`Cache`] for the derived forms
//!   of compressed files.
//!
//! ```no_run
//! use model_core::{bundled, Batcher, LoadOptions, LoadStrategy, Normalization};
//! use burn::prelude::Device;
//!
//! let options = LoadOptions::new(LoadStrategy::LoadAll).with_cache(bundled::workspace_cache());
//! let train = bundled::mnist(bundled::MnistSplit::Train, &options)?;
//! assert_eq!(train.len(), 60_000);
//! let batcher = Batcher::new(64, 42, Normalization::mnist());
//! let items = &batcher.plan(train.len(), 0)[0];
//! let host = batcher.assemble(&train, items)?;
//! let batch = batcher.to_tensors(&host, &Device::flex())?;
//! assert_eq!(batch.images.dims(), [64, 1, 28, 28]);
//! # Ok::<(), model_core::DataError>(())
//! ```

pub mod batch;
pub mod bundled;
pub mod cache;
pub mod cifar;
pub mod dataset;
pub mod device;
pub mod error;
mod host_reduce;
pub mod idx;
pub mod image_folder;
pub mod inference;
pub mod loader;
pub mod models;
pub mod report;
pub mod tap;
pub mod train;

pub use batch::{Batch, Batcher, HostBatch, Normalization, epoch_order};
pub use cache::Cache;
pub use dataset::{
    Dataset, DatasetSummary, InMemory, MeanImage, MeanImages, SampleShape, SampleSource,
};
pub use device::{DeviceChoice, DeviceError};
pub use error::{DataError, Location};
pub use loader::{CachedSource, LoadOptions, LoadStrategy};
pub use report::{Finding, Report, RunInfo, Step, StepReport, ToolInfo, Verdict, write_atomic};
