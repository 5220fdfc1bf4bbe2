//! The step as the checklist runs it: [`ImpactCheck::run`] maps one held-out image per label
//! (occlusion and inverse) and the model impact on the dataset's mean image, writes the pictures
//! and raw maps, and [`step_report`] turns the [`ImpactOutcome`] into the step's report.
//!
//! ```no_run
//! use burn::prelude::*;
//! use impact::{ImpactCheck, step_report};
//! use model_core::bundled::{self, MnistSplit};
//! use model_core::models::LeNet;
//! use model_core::{LoadOptions, Normalization};
//!
//! let device = Device::flex();
//! let model = LeNet::mnist(&device); // trained, in practice
//! let options = LoadOptions::default().with_cache(bundled::workspace_cache());
//! let held_out = bundled::mnist(MnistSplit::Test, &options)?;
//! let check = ImpactCheck::builder().window(6).stride(2).progress(true).build()?;
//! let outcome = check.run(&model, &held_out, &Normalization::mnist(), &device, Some("report".as_ref()))?;
//! let report = step_report(&outcome); // artifacts under report/results/
//! println!("{} images, {:.0} windows/s", report.metrics["images_mapped"], report.metrics["windows_per_second"]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::path::Path;
use std::time::Instant;

use burn::prelude::*;
use indicatif::{ProgressBar, ProgressStyle};
use model_core::inference::InferenceForward;
use model_core::models::Classifier;
use model_core::{Dataset, Finding, MeanImage, Normalization, Step, StepReport, Verdict};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::error::ImpactError;
use crate::input::{Fill, Input, Target, check_normalization};
use crate::occlusion::{
    Forward, ImpactMaps, InverseMaps, Occlusion, OcclusionBuilder, OcclusionMaps, argmax,
    estimate_sample_bytes,
};
use crate::region::{Rect, Region, inside_share};
use crate::render::{self, Picture};

/// The step's settings; see the module documentation. Built with [`ImpactCheck::builder`].
#[derive(Debug, Clone)]
pub struct ImpactCheck {
    occlusion: Occlusion,
    sample_bytes_given: bool,
    region: Region,
    share_threshold: f64,
    progress: bool,
    subdir: String,
    base: Option<MeanImage>,
    candidates: usize,
    lowered: bool,
    incremental: bool,
}

/// Builds an [`ImpactCheck`].
#[derive(Debug, Clone)]
pub struct ImpactCheckBuilder {
    occlusion: OcclusionBuilder,
    sample_bytes_given: bool,
    region: Region,
    share_threshold: f64,
    progress: bool,
    subdir: String,
    base: Option<MeanImage>,
    candidates: usize,
    lowered: bool,
    incremental: bool,
}

impl Default for ImpactCheckBuilder {
    fn default() -> Self {
        ImpactCheckBuilder {
            occlusion: Occlusion::builder(),
            sample_bytes_given: false,
            region: Region::default(),
            share_threshold: 0.5,
            progress: false,
            subdir: "results".into(),
            base: None,
            candidates: 20,
            lowered: true,
            incremental: true,
        }
    }
}

impl ImpactCheckBuilder {
    /// A square window of `size` (default: a fifth of the image's smaller side).
    pub fn window(mut self, size: usize) -> Self {
        self.occlusion = self.occlusion.window(size);
        self
    }

    /// The stride (default: a third of the window).
    pub fn stride(mut self, stride: usize) -> Self {
        self.occlusion = self.occlusion.stride(stride);
        self
    }

    /// The occluding fill (default black after normalisation).
    pub fn fill(mut self, fill: Fill) -> Self {
        self.occlusion = self.occlusion.fill(fill);
        self
    }

    /// The highlight of model impact (default white after normalisation).
    pub fn highlight(mut self, fill: Fill) -> Self {
        self.occlusion = self.occlusion.highlight(fill);
        self
    }

    /// Activation bytes one batch may take.
    pub fn memory_budget(mut self, bytes: usize) -> Self {
        self.occlusion = self.occlusion.memory_budget(bytes);
        self
    }

    /// One sample's activation bytes (default: measured with a traced forward).
    pub fn sample_bytes(mut self, bytes: usize) -> Self {
        self.occlusion = self.occlusion.sample_bytes(bytes);
        self.sample_bytes_given = true;
        self
    }

    /// A cap on the batch size.
    pub fn max_batch(mut self, n: usize) -> Self {
        self.occlusion = self.occlusion.max_batch(n);
        self
    }

    /// How the object's region is found (default [`Region::Auto`]: the bounding box of nonzero
    /// pixels for one-channel images, the image less an eighth-side border band otherwise).
    pub fn region(mut self, region: Region) -> Self {
        self.region = region;
        self
    }

    /// The border band in pixels for images with more than one channel.
    pub fn border(mut self, band: usize) -> Self {
        self.region = match self.region {
            Region::Auto { threshold, .. } => Region::Auto {
                threshold,
                band: Some(band),
            },
            _ => Region::Border { band },
        };
        self
    }

    /// Warn when the share of impact mass inside the object is below this (default 0.5).
    pub fn share_threshold(mut self, threshold: f64) -> Self {
        self.share_threshold = threshold;
        self
    }

    /// Show a progress bar on the terminal.
    pub fn progress(mut self, show: bool) -> Self {
        self.progress = show;
        self
    }

    /// The folder, inside the report folder, the artifacts go to (default `results`).
    pub fn artifact_dir(mut self, name: impl Into<String>) -> Self {
        self.subdir = name.into();
        self
    }

    /// The base of model impact (default: the held-out set's mean image).
    pub fn base(mut self, mean: MeanImage) -> Self {
        self.base = Some(mean);
        self
    }

    /// On a CPU device, run the model through its lowered [`model_core::inference::InferenceNet`] when it has one
    /// (default true; the maps are the same up to float rounding, 3-4x faster). False keeps
    /// Burn's forward.
    pub fn lowered(mut self, lowered: bool) -> Self {
        self.lowered = lowered;
        self
    }

    /// With the lowered forward, recompute of each perturbed copy only the pixels its window
    /// reaches, layer by layer, from the reference input's activations (default true; the same
    /// maps, see [`model_core::inference::InferenceNet::forward_near`]). False runs every copy
    /// whole.
    pub fn incremental(mut self, incremental: bool) -> Self {
        self.incremental = incremental;
        self
    }

    pub fn build(self) -> Result<ImpactCheck, ImpactError> {
        if !(0.0..=1.0).contains(&self.share_threshold) {
            return Err(ImpactError::Option {
                what: format!("share threshold {} is not in [0, 1]", self.share_threshold),
            });
        }
        if self.subdir.is_empty()
            || self.subdir.contains("..")
            || Path::new(&self.subdir).is_absolute()
        {
            return Err(ImpactError::Option {
                what: format!(
                    "artifact folder `{}` must be a relative name inside the report folder",
                    self.subdir
                ),
            });
        }
        Ok(ImpactCheck {
            occlusion: self.occlusion.target(Target::Predicted).build()?,
            sample_bytes_given: self.sample_bytes_given,
            region: self.region,
            share_threshold: self.share_threshold,
            progress: self.progress,
            subdir: self.subdir,
            base: self.base,
            candidates: self.candidates,
            lowered: self.lowered,
            incremental: self.incremental,
        })
    }
}

/// The maps of one held-out image.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageImpact {
    /// Index in the held-out dataset.
    pub index: usize,
    pub label: usize,
    pub class_name: String,
    pub occlusion: OcclusionMaps,
    pub inverse: InverseMaps,
    /// The object's region.
    pub region: Rect,
    /// Share of the occlusion map's positive mass inside the region.
    pub inside_share: f64,
    /// This image's files, relative to the report folder.
    pub artifacts: Vec<String>,
}

/// What [`ImpactCheck::run`] found.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImpactOutcome {
    pub model: String,
    pub class_names: Vec<String>,
    pub images: Vec<ImageImpact>,
    pub model_impact: ImpactMaps,
    /// Window positions evaluated in all (occlusion, inverse, model impact).
    pub windows: usize,
    /// Seconds spent in the maps (model forwards and perturbation).
    pub map_seconds: f64,
    /// Seconds of the whole run (image choice, mean image, files).
    pub seconds: f64,
    pub share_threshold: f64,
    pub region: Region,
    /// Every file written, relative to the report folder.
    pub artifacts: Vec<String>,
    /// What ran the model: `lowered` (the CPU [`model_core::inference::InferenceNet`]) or `burn`, and why not lowered.
    pub engine: Engine,
}

/// Which forward the maps came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Engine {
    /// `lowered` or `burn`.
    pub name: String,
    /// Why Burn's forward ran (empty when lowered).
    pub reason: String,
    /// Whether each perturbed copy recomputed only what its window reaches (lowered only).
    #[serde(default)]
    pub incremental: bool,
}

impl ImpactOutcome {
    pub fn windows_per_second(&self) -> f64 {
        self.windows as f64 / self.map_seconds.max(1e-12)
    }

    /// The smallest share of impact mass inside the object over the mapped images (NaN for none).
    pub fn evidence_inside_share(&self) -> f64 {
        self.images
            .iter()
            .map(|i| i.inside_share)
            .fold(f64::NAN, f64::min)
    }
}

impl ImpactCheck {
    pub fn builder() -> ImpactCheckBuilder {
        ImpactCheckBuilder::default()
    }

    /// Maps one image per label of `held_out` (the first of that label the model gets right
    /// among the first 20, else the first) with occlusion and inverse occlusion, and the model
    /// impact on the mean image; writes pictures, JSON and NPY files into
    /// `report_dir/<artifact dir>` when `report_dir` is given. The model runs without autodiff.
    pub fn run<M: Classifier>(
        &self,
        model: &M,
        held_out: &Dataset,
        normalization: &Normalization,
        device: &Device,
        report_dir: Option<&Path>,
    ) -> Result<ImpactOutcome, ImpactError> {
        let started = Instant::now();
        let shape = held_out.shape();
        if model.input_shape() != shape {
            return Err(ImpactError::InputShape {
                what: format!(
                    "{} takes {} images; dataset `{}` has {shape}",
                    model.name(),
                    model.input_shape(),
                    held_out.name()
                ),
            });
        }
        if held_out.is_empty() {
            return Err(ImpactError::InputShape {
                what: format!("dataset `{}` is empty", held_out.name()),
            });
        }
        check_normalization(normalization, shape.channels)?;
        let device = device.clone().inner();
        let model = model.valid();
        let lowered = if self.lowered {
            InferenceForward::new(&model, &device)
        } else {
            InferenceForward::burn(&model, "turned off")
        };
        let engine = Engine {
            name: if lowered.is_lowered() {
                "lowered"
            } else {
                "burn"
            }
            .into(),
            reason: lowered.reason().to_string(),
            incremental: lowered.is_lowered() && self.incremental,
        };
        let forward = |x: Tensor<4>| lowered.forward(x);
        // The maps' forward: incremental, or every copy whole.
        let maps: &dyn Forward = if engine.incremental {
            &lowered
        } else {
            &forward
        };
        let mut occlusion = self
            .occlusion
            .clone()
            .with_normalization(normalization.clone());
        if !self.sample_bytes_given {
            occlusion = occlusion.with_sample_bytes(estimate_sample_bytes(&model, &device));
        }
        occlusion.window_for(shape)?;
        let classes = held_out.class_names().len().min(model.num_classes());
        let chosen = self.choose(&forward, held_out, normalization, &device, classes)?;

        let bar = if self.progress {
            let bar = ProgressBar::new(chosen.len() as u64 + 1);
            bar.set_style(
                ProgressStyle::with_template("{prefix} {bar:30} {pos}/{len} {msg} [{elapsed}]")
                    .expect("valid template"),
            );
            bar.set_prefix(format!("occlusion maps of {}", model.name()));
            bar
        } else {
            ProgressBar::hidden()
        };
        let out_dir = report_dir.map(|d| d.join(&self.subdir));
        if let Some(dir) = &out_dir {
            std::fs::create_dir_all(dir).map_err(|e| ImpactError::io(dir, e))?;
        }
        let factor = render::default_factor(shape.height, shape.width);
        let mut images = Vec::new();
        let mut artifacts = Vec::new();
        let (mut windows, mut map_seconds) = (0usize, 0f64);
        let mut pixels = vec![0u8; shape.len()];
        for index in chosen {
            held_out.read_sample(index, &mut pixels)?;
            let label = held_out.label(index) as usize;
            let class_name = held_out.class_names()[label].clone();
            bar.set_message(class_name.clone());
            let input = Input::from_pixels(&pixels, shape, normalization)?;
            let occ = occlusion.occlude(maps, &input, &device)?;
            let inverse = occlusion.inverse(maps, &input, &device)?;
            windows += occ.stats.windows + inverse.stats.windows;
            map_seconds += occ.stats.seconds + inverse.stats.seconds;
            let values: Vec<f32> = pixels.iter().map(|&p| p as f32).collect();
            let region = self
                .region
                .locate(&values, shape.channels, shape.height, shape.width);
            let share = inside_share(&occ.probability_drop, &region);
            let mut image = ImageImpact {
                index,
                label,
                class_name,
                occlusion: occ,
                inverse,
                region,
                inside_share: share,
                artifacts: Vec::new(),
            };
            if let Some(dir) = &out_dir {
                let picture =
                    Picture::from_pixels(&values, shape.channels, shape.height, shape.width);
                image.artifacts = self.write_image(dir, &image, &picture, factor)?;
                artifacts.extend(image.artifacts.iter().cloned());
            }
            images.push(image);
            bar.inc(1);
        }

        bar.set_message("model impact on the mean image");
        let mean = match &self.base {
            Some(m) => m.clone(),
            None => held_out.mean_images()?.overall,
        };
        let base = Input::from_mean(&mean, normalization)?;
        let model_impact = occlusion.model_impact(maps, &base, &device)?;
        windows += model_impact.stats.windows;
        map_seconds += model_impact.stats.seconds;
        if let Some(dir) = &out_dir {
            let picture =
                Picture::from_pixels(&mean.pixels, shape.channels, shape.height, shape.width);
            artifacts.extend(self.write_impact(
                dir,
                &model_impact,
                &picture,
                held_out.class_names(),
                factor,
            )?);
        }
        bar.finish_and_clear();
        Ok(ImpactOutcome {
            model: model.name().to_string(),
            class_names: held_out.class_names().to_vec(),
            images,
            model_impact,
            windows,
            map_seconds,
            seconds: started.elapsed().as_secs_f64(),
            share_threshold: self.share_threshold,
            region: self.region,
            artifacts,
            engine,
        })
    }

    /// One dataset index per label: the first of the label's first `candidates` images the
    /// model classifies correctly, else the first.
    fn choose<F: Fn(Tensor<4>) -> Tensor<2>>(
        &self,
        forward: &F,
        data: &Dataset,
        normalization: &Normalization,
        device: &Device,
        classes: usize,
    ) -> Result<Vec<usize>, ImpactError> {
        let shape = data.shape();
        let mut per_label: Vec<Vec<usize>> = vec![Vec::new(); classes];
        for (i, &l) in data.labels().iter().enumerate() {
            if let Some(v) = per_label.get_mut(l as usize)
                && v.len() < self.candidates
            {
                v.push(i);
            }
        }
        let mut chosen = Vec::new();
        let mut pixels = Vec::new();
        for (label, items) in per_label.iter().enumerate() {
            if items.is_empty() {
                continue;
            }
            pixels.resize(items.len() * shape.len(), 0);
            data.read_samples(items, &mut pixels)?;
            let values: Vec<f32> = pixels
                .chunks_exact(shape.len())
                .map(|p| Input::from_pixels(p, shape, normalization).map(|i| i.values().to_vec()))
                .collect::<Result<Vec<_>, _>>()?
                .concat();
            let x = Tensor::<4>::from_data(
                TensorData::new(
                    values,
                    [items.len(), shape.channels, shape.height, shape.width],
                ),
                device,
            );
            let logits = forward(x);
            let [_, k] = logits.dims();
            let logits = logits
                .try_into_vec_as::<f32>()
                .map_err(|e| ImpactError::Model {
                    what: format!("reading the logits back: {e:?}"),
                })?;
            let right = logits
                .chunks_exact(k.max(1))
                .position(|row| argmax(row) == label)
                .unwrap_or(0);
            chosen.push(items[right]);
        }
        Ok(chosen)
    }

    fn write_image(
        &self,
        dir: &Path,
        image: &ImageImpact,
        picture: &Picture,
        factor: u32,
    ) -> Result<Vec<String>, ImpactError> {
        let stem = format!("{}_{}", image.label, file_safe(&image.class_name));
        let mut framed = picture.clone();
        framed.outline(&image.region);
        let strip = render::strip(
            &[
                framed,
                render::overlay(picture, &image.occlusion.probability_drop, 0.0),
                render::overlay(
                    picture,
                    &gain_over(&image.inverse.probability, image.inverse.fill_probability),
                    0.0,
                ),
            ],
            factor,
            4,
        );
        let png = format!("{stem}_maps.png");
        render::save_png(&strip, &dir.join(&png))?;
        let json = format!("{stem}.json");
        let body = json!({
            "index": image.index,
            "label": image.label,
            "class_name": image.class_name,
            "panels": ["image with the object's region (green)", "occlusion: drop in the target's probability (red up, blue down)", "inverse: the target's probability with only the window shown, less its probability with nothing shown (red up, blue down)"],
            "target": image.occlusion.target,
            "predicted": image.occlusion.predicted,
            "probabilities": image.occlusion.probabilities,
            "window": image.occlusion.window,
            "grid": image.occlusion.grid,
            "base_probability": image.occlusion.base_probability,
            "base_logit": image.occlusion.base_logit,
            "fill_probability": image.inverse.fill_probability,
            "region": image.region,
            "inside_share": image.inside_share,
            "occlusion_probability_drop": image.occlusion.probability_drop.rows(),
            "occlusion_logit_drop": image.occlusion.logit_drop.rows(),
            "inverse_probability": image.inverse.probability.rows(),
        });
        write(
            dir,
            &json,
            serde_json::to_string_pretty(&body)
                .unwrap_or_default()
                .as_bytes(),
        )?;
        let occ_npy = format!("{stem}_occlusion.npy");
        write(
            dir,
            &occ_npy,
            &render::npy_bytes(&image.occlusion.probability_drop),
        )?;
        let inv_npy = format!("{stem}_inverse.npy");
        write(
            dir,
            &inv_npy,
            &render::npy_bytes(&image.inverse.probability),
        )?;
        Ok([png, json, occ_npy, inv_npy]
            .into_iter()
            .map(|f| format!("{}/{f}", self.subdir))
            .collect())
    }

    fn write_impact(
        &self,
        dir: &Path,
        maps: &ImpactMaps,
        mean: &Picture,
        class_names: &[String],
        factor: u32,
    ) -> Result<Vec<String>, ImpactError> {
        let classes = maps.base_probabilities.len();
        let img =
            render::label_map_image(Some(mean), &maps.labels, &maps.strength, classes, factor);
        render::save_png(&img, &dir.join("model_impact.png"))?;
        let legend: Vec<_> = (0..classes)
            .map(|l| {
                let [r, g, b] = render::label_color(l);
                json!({"label": l, "class_name": class_names.get(l), "color": format!("#{r:02x}{g:02x}{b:02x}")})
            })
            .collect();
        let rows: Vec<&[i32]> = maps.labels.chunks(maps.strength.width.max(1)).collect();
        let body = json!({
            "panels": ["the base (mean) image", "label map: the label whose probability rises most when the window is highlighted", "strength: that rise"],
            "legend": legend,
            "window": maps.window,
            "grid": maps.grid,
            "base_probabilities": maps.base_probabilities,
            "labels": rows,
            "strength": maps.strength.rows(),
            "window_labels": maps.window_labels,
            "window_rise": maps.window_rise,
        });
        write(
            dir,
            "model_impact.json",
            serde_json::to_string_pretty(&body)
                .unwrap_or_default()
                .as_bytes(),
        )?;
        write(
            dir,
            "model_impact_strength.npy",
            &render::npy_bytes(&maps.strength),
        )?;
        Ok([
            "model_impact.png",
            "model_impact.json",
            "model_impact_strength.npy",
        ]
        .into_iter()
        .map(|f| format!("{}/{f}", self.subdir))
        .collect())
    }
}

/// `map` less `base` (the inverse map against the all-fill input, for the picture).
fn gain_over(map: &crate::geometry::Map, base: f32) -> crate::geometry::Map {
    crate::geometry::Map {
        height: map.height,
        width: map.width,
        values: map.values.iter().map(|v| v - base).collect(),
    }
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), ImpactError> {
    let path = dir.join(name);
    model_core::write_atomic(&path, bytes).map_err(|e| ImpactError::io(&path, e))
}

fn file_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// The step's report: metrics `images_mapped`, `windows_per_second`, `evidence_inside_share`
/// (the smallest over the mapped images), `windows`, `map_seconds`; a Warn finding per image
/// whose evidence lies mostly outside the object (one Pass finding when none does); the maps as
/// artifacts.
pub fn step_report(outcome: &ImpactOutcome) -> StepReport {
    let mut report = StepReport::new(Step::Results);
    report.seconds = outcome.seconds;
    report.metric("images_mapped", outcome.images.len() as f64);
    report.metric("windows_per_second", outcome.windows_per_second());
    report.metric("evidence_inside_share", outcome.evidence_inside_share());
    report.metric("windows", outcome.windows as f64);
    report.metric("map_seconds", outcome.map_seconds);
    let threshold = outcome.share_threshold;
    let mut outside = 0;
    for image in &outcome.images {
        if image.inside_share < threshold {
            outside += 1;
            report.push(Finding {
                check: "evidence_outside_object".into(),
                verdict: Verdict::Warn,
                subject: format!("label {} ({}), image {}", image.label, image.class_name, image.index),
                measured: image.inside_share,
                threshold,
                message: format!(
                    "only {:.0}% of the evidence for `{}` lies inside the object's region (rows {}..{}, columns {}..{}); the rest is in the border or the background",
                    100.0 * image.inside_share,
                    outcome.class_names.get(image.occlusion.target).map_or("?", |s| s.as_str()),
                    image.region.top,
                    image.region.bottom,
                    image.region.left,
                    image.region.right
                ),
                remedy: "look at the occlusion map: if the model keys on the background, a frame or a watermark, augment (crop, shift, vary backgrounds) or clean the data that carries it".into(),
            });
        }
    }
    if outside == 0 && !outcome.images.is_empty() {
        report.push(Finding {
            check: "evidence_inside_object".into(),
            verdict: Verdict::Pass,
            subject: format!("{} images", outcome.images.len()),
            measured: outcome.evidence_inside_share(),
            threshold,
            message: format!(
                "for every mapped image at least {:.0}% of the evidence lies inside the object's region",
                100.0 * outcome.evidence_inside_share()
            ),
            remedy: String::new(),
        });
    }
    let mut counts = vec![0usize; outcome.model_impact.base_probabilities.len()];
    for &l in &outcome.model_impact.labels {
        if l >= 0 && (l as usize) < counts.len() {
            counts[l as usize] += 1;
        }
    }
    report.details = json!({
        "model": outcome.model,
        "engine": outcome.engine,
        "region": outcome.region,
        "images": outcome.images.iter().map(|i| json!({
            "index": i.index,
            "label": i.label,
            "class_name": i.class_name,
            "predicted": i.occlusion.predicted,
            "target": i.occlusion.target,
            "base_probability": i.occlusion.base_probability,
            "fill_probability": i.inverse.fill_probability,
            "occlusion_peak": i.occlusion.probability_drop.argmax(),
            "inverse_peak": i.inverse.probability.argmax(),
            "region": i.region,
            "inside_share": i.inside_share,
            "window": i.occlusion.window,
            "batch_size": i.occlusion.stats.batch_size,
        })).collect::<Vec<_>>(),
        "model_impact": {
            "window": outcome.model_impact.window,
            "base_probabilities": outcome.model_impact.base_probabilities,
            "pixels_per_label": counts,
        },
    });
    report.artifacts = outcome.artifacts.clone();
    report
}
