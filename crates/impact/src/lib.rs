//! Step 5 of the checklist, **understand the results**.
//!
//! After Zeiler & Fergus (2013): run the network repeatedly on one input while a window of black
//! pixels moves across it, to see which regions drive the label ([`Occlusion::occlude`]); the
//! opposite, a black input in which only the window shows the original ([`Occlusion::inverse`]);
//! and on the dataset's mean image, highlight one window at a time and record which label each
//! window drives most ([`Occlusion::model_impact`]). The same works on any `1 x H x W` grid of
//! values ([`Input::grid`]), not only pictures.
//!
//! - [`geometry`]: window positions and per-pixel averaging into maps.
//! - [`input`]: the sample, the fill, the target label.
//! - [`occlusion`]: the batched engine, for any [`Forward`]: a `Fn(Tensor<4>) -> Tensor<2>`
//!   producing logits, or a [`model_core::inference::InferenceForward`], which recomputes of each
//!   perturbed copy only what its window reaches (faster; the same maps).
//! - [`region`]: where the object is, and the share of the evidence inside it.
//! - [`render`]: heat-map overlays, the label map with its legend, NPY files.
//! - [`check`]: the step as the checklist runs it ([`ImpactCheck`]) and its [`step_report`].
//!
//! ```no_run
//! use burn::prelude::*;
//! use impact::{Input, Occlusion};
//! use model_core::models::{Classifier, LeNet};
//! use model_core::{Normalization, SampleShape};
//!
//! let device = Device::flex();
//! let model = LeNet::mnist(&device); // trained, in practice
//! let occlusion = Occlusion::builder()
//!     .window(6)
//!     .stride(2)
//!     .normalization(Normalization::mnist())
//!     .build()?;
//! let image = Input::from_pixels(&[0u8; 784], SampleShape::new(1, 28, 28), &Normalization::mnist())?;
//! let maps = occlusion.occlude(&|x| model.forward(x), &image, &device)?;
//! println!("target {} peak at {:?}", maps.target, maps.probability_drop.argmax());
//!
//! // On the CPU, the model lowered and each occluded copy computed incrementally:
//! let lowered = model_core::inference::InferenceForward::new(&model, &device);
//! let same = occlusion.occlude(&lowered, &image, &device)?;
//! # Ok::<(), impact::ImpactError>(())
//! ```

pub mod check;
pub mod error;
pub mod geometry;
pub mod input;
pub mod occlusion;
pub mod region;
pub mod render;

pub use check::{ImageImpact, ImpactCheck, ImpactCheckBuilder, ImpactOutcome, step_report};
pub use error::ImpactError;
pub use geometry::{Map, Window};
pub use input::{Fill, Input, Target};
pub use occlusion::{
    DEFAULT_MEMORY_BUDGET, Forward, ImpactMaps, InverseMaps, Occlusion, OcclusionBuilder,
    OcclusionMaps, RunStats, estimate_sample_bytes,
};
pub use region::{Rect, Region, inside_share};
