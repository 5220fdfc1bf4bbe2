//! Step 1 of the checklist, **check the data**.
//!
//! Shows whether a dataset's labels can be learned before any training: a t-SNE map of the data
//! coloured by label, the per-label mean images with their pixel value ranges, and a measured
//! verdict on separability (k-NN label accuracy in the map and in PCA space, silhouettes, the
//! confusable label pairs, candidate label errors). Built on `model-core`'s datasets; speaks its
//! findings and verdicts.
//!
//! One entry point:
//!
//! ```no_run
//! # use std::path::Path;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use model_core::bundled::{self, MnistSplit};
//! let mnist = bundled::mnist(MnistSplit::Test, &model_core::LoadOptions::default())?;
//! let check = data_check::DataCheck::builder().points(2_000).seed(7).build()?;
//! let outcome = check.run(&mnist, Path::new("report"))?;
//! let report = data_check::step_report(&outcome); // model_core::StepReport for Step::Data
//! # Ok(()) }
//! ```
//!
//! [`DataCheck::run_features`] maps raw feature vectors (a layer's activations) the same way.
//! The parts are public too: [`tsne::tsne`], [`pca::fit`], [`knn::knn`],
//! [`separability::separability`], [`means`], [`plot`], [`estimate::estimate`].

pub mod error;
pub mod estimate;
pub mod knn;
pub mod means;
pub mod pca;
pub mod plot;
pub mod separability;
pub mod tsne;

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use model_core::{Dataset, Finding, InMemory, SampleShape, Step, StepReport, Verdict};
use ndarray::{Array2, ArrayView2};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

pub use error::{DataCheckError, Result};
pub use estimate::Estimate;
pub use means::MeanImageSummary;
pub use separability::{Separability, Silhouette};
pub use tsne::{Init, Tsne, TsneParams};

/// Rejects NaN and infinite features.
pub(crate) fn check_finite(x: ArrayView2<'_, f32>) -> Result<()> {
    for ((row, column), &value) in x.indexed_iter() {
        if !value.is_finite() {
            return Err(DataCheckError::NonFinite { row, column, value });
        }
    }
    Ok(())
}

/// Everything the check can be told. [`DataCheckConfig::default`] documents the defaults.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DataCheckConfig {
    /// Samples to map: a stratified sample of this many (`None`: every sample). Default 2,000.
    pub points: Option<usize>,
    /// Seed of the sample, the PCA and the map. Default 0.
    pub seed: u64,
    /// Principal components kept before t-SNE. Default 50.
    pub pca_dims: usize,
    /// Neighbours of the k-NN measures. Default 10.
    pub k: usize,
    pub tsne: TsneParams,
    /// The 2-D k-NN accuracy at or above which the labels separate (Pass). Default 0.80: a
    /// 10-NN vote in a good map of MNIST scores about 0.95, CIFAR-10's raw pixels about 0.3.
    pub pass_accuracy: f64,
    /// Fail when the 2-D accuracy gains less than this share of the way from chance to 1,
    /// `(accuracy - chance) / (1 - chance)`: labels carrying no information (shuffled labels
    /// score about 0) rather than labels that are merely hard. Default 0.10.
    pub fail_lift: f64,
    /// A label pair mixing at this rate or more is a warning. Default 0.20 (MNIST's most mixed
    /// pair, 4/9, mixes at about 0.05 in a 10,000-point map and 0.1 in a 1,500-point one).
    pub confusable_rate: f64,
    /// A share of candidate label errors above this is a warning. Default 0.05.
    pub label_error_share: f64,
    /// Memory the check may use, in bytes (`None`: 80% of the available memory).
    pub memory_budget: Option<u64>,
    /// Show a progress bar on the terminal. Default off.
    pub progress: bool,
    /// Write the pictures. Default on.
    pub artifacts: bool,
    /// Folder of the pictures, relative to the output folder. Default `data`.
    pub artifact_dir: String,
}

impl Default for DataCheckConfig {
    fn default() -> Self {
        DataCheckConfig {
            points: Some(2_000),
            seed: 0,
            pca_dims: 50,
            k: 10,
            tsne: TsneParams::default(),
            pass_accuracy: 0.80,
            fail_lift: 0.10,
            confusable_rate: 0.20,
            label_error_share: 0.05,
            memory_budget: None,
            progress: false,
            artifacts: true,
            artifact_dir: "data".into(),
        }
    }
}

impl DataCheckConfig {
    /// Checks every value's range.
    pub fn validate(&self) -> Result<()> {
        use error::invalid;
        self.tsne.validate()?;
        if self.pca_dims == 0 {
            return Err(invalid("pca_dims", 0, "at least 1"));
        }
        if self.k == 0 {
            return Err(invalid("k", 0, "at least 1"));
        }
        if self.points == Some(0) {
            return Err(invalid("points", 0, "at least 1 (or every sample)"));
        }
        for (name, v) in [
            ("pass_accuracy", self.pass_accuracy),
            ("fail_lift", self.fail_lift),
            ("confusable_rate", self.confusable_rate),
            ("label_error_share", self.label_error_share),
        ] {
            if !(v.is_finite() && (0.0..=1.0).contains(&v)) {
                return Err(invalid(name, v, "a number in [0, 1]"));
            }
        }
        if self.artifact_dir.contains("..") || Path::new(&self.artifact_dir).is_absolute() {
            return Err(invalid(
                "artifact_dir",
                &self.artifact_dir,
                "a relative folder inside the output folder",
            ));
        }
        Ok(())
    }
}

/// Builds a [`DataCheck`].
#[derive(Debug, Clone, Default)]
pub struct DataCheckBuilder {
    config: DataCheckConfig,
}

impl DataCheckBuilder {
    /// Maps a stratified sample of `n` samples (every sample when the dataset holds fewer).
    pub fn points(mut self, n: usize) -> Self {
        self.config.points = Some(n);
        self
    }
    /// Maps every sample.
    pub fn all_points(mut self) -> Self {
        self.config.points = None;
        self
    }
    pub fn seed(mut self, seed: u64) -> Self {
        self.config.seed = seed;
        self
    }
    pub fn pca_dims(mut self, dims: usize) -> Self {
        self.config.pca_dims = dims;
        self
    }
    pub fn k(mut self, k: usize) -> Self {
        self.config.k = k;
        self
    }
    /// All t-SNE parameters at once (its seed is replaced by the check's).
    pub fn tsne(mut self, params: TsneParams) -> Self {
        self.config.tsne = params;
        self
    }
    pub fn perplexity(mut self, perplexity: f64) -> Self {
        self.config.tsne.perplexity = perplexity;
        self
    }
    /// Iterations of early exaggeration and after it.
    pub fn iterations(mut self, early: usize, main: usize) -> Self {
        self.config.tsne.early_iterations = early;
        self.config.tsne.iterations = main;
        self
    }
    pub fn learning_rate(mut self, rate: f64) -> Self {
        self.config.tsne.learning_rate = Some(rate);
        self
    }
    pub fn theta(mut self, theta: f64) -> Self {
        self.config.tsne.theta = theta;
        self
    }
    pub fn pass_accuracy(mut self, accuracy: f64) -> Self {
        self.config.pass_accuracy = accuracy;
        self
    }
    pub fn fail_lift(mut self, lift: f64) -> Self {
        self.config.fail_lift = lift;
        self
    }
    pub fn memory_budget(mut self, bytes: u64) -> Self {
        self.config.memory_budget = Some(bytes);
        self
    }
    pub fn progress(mut self, on: bool) -> Self {
        self.config.progress = on;
        self
    }
    pub fn artifacts(mut self, on: bool) -> Self {
        self.config.artifacts = on;
        self
    }
    pub fn artifact_dir(mut self, dir: impl Into<String>) -> Self {
        self.config.artifact_dir = dir.into();
        self
    }
    /// Validates the configuration.
    pub fn build(mut self) -> Result<DataCheck> {
        self.config.tsne.seed = self.config.seed;
        self.config.validate()?;
        Ok(DataCheck {
            config: self.config,
        })
    }
}

/// Seconds spent in each part.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct Timings {
    pub read: f64,
    pub pca: f64,
    /// The neighbours in PCA space (shared by t-SNE and the PCA-space measures).
    pub knn: f64,
    /// t-SNE: similarities and optimisation.
    pub tsne: f64,
    pub measures: f64,
    pub pictures: f64,
    pub total: f64,
}

/// Everything the check found.
#[derive(Debug, Clone, PartialEq)]
pub struct DataCheckOutcome {
    pub dataset: String,
    pub config: DataCheckConfig,
    /// Dataset index of each mapped point.
    pub indices: Vec<usize>,
    /// Label of each mapped point.
    pub labels: Vec<u8>,
    pub class_names: Vec<String>,
    /// `points x 2` map.
    pub embedding: Array2<f32>,
    pub tsne: TsneSummary,
    pub pca_explained_ratio: f64,
    pub separability_2d: Separability,
    pub separability_pca: Separability,
    pub silhouette: Silhouette,
    /// Accuracy of a label-blind guess (the largest label's share).
    pub chance: f64,
    /// Mean images of the mapped samples (datasets only, not raw features).
    pub mean_images: Option<MeanImageSummary>,
    pub estimate: Estimate,
    pub peak_rss_bytes: Option<u64>,
    pub timings: Timings,
    pub findings: Vec<Finding>,
    pub verdict: Verdict,
    /// Files written, relative to the output folder.
    pub artifacts: Vec<String>,
}

impl DataCheckOutcome {
    /// Number of points mapped.
    pub fn points(&self) -> usize {
        self.labels.len()
    }
}

/// The t-SNE run's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TsneSummary {
    pub perplexity: f64,
    pub neighbours: usize,
    pub learning_rate: f64,
    pub iterations: usize,
    pub kl_divergence: f64,
    pub seconds: f64,
}

/// The data check, configured.
#[derive(Debug, Clone, Default)]
pub struct DataCheck {
    config: DataCheckConfig,
}

/// The input of the shared pipeline.
struct Input<'a> {
    name: String,
    features: ArrayView2<'a, f32>,
    labels: Vec<u8>,
    indices: Vec<usize>,
    class_names: Vec<String>,
    /// Pixels and shape of the samples (datasets only).
    pixels: Option<(&'a [u8], SampleShape)>,
    estimate: Estimate,
    read_seconds: f64,
}

impl DataCheck {
    pub fn builder() -> DataCheckBuilder {
        DataCheckBuilder::default()
    }

    /// A check with `config` (validated).
    pub fn with_config(config: DataCheckConfig) -> Result<DataCheck> {
        DataCheckBuilder { config }.build()
    }

    pub fn config(&self) -> &DataCheckConfig {
        &self.config
    }

    fn budget(&self) -> u64 {
        self.config
            .memory_budget
            .unwrap_or_else(estimate::default_budget)
    }

    /// Points mapped from a dataset of `len` samples.
    fn points_for(&self, len: usize) -> usize {
        self.config.points.map_or(len, |n| n.min(len))
    }

    fn checked_estimate(&self, points: usize, dims: usize, resident: u64) -> Result<Estimate> {
        let est = estimate::estimate(
            points,
            dims,
            self.config.pca_dims,
            &self.config.tsne,
            resident,
        );
        let budget = self.budget();
        if est.bytes > budget {
            return Err(DataCheckError::TooLarge {
                points,
                dims,
                estimated_bytes: est.bytes,
                budget_bytes: budget,
                max_points: estimate::max_points(
                    budget,
                    dims,
                    self.config.pca_dims,
                    &self.config.tsne,
                    resident,
                ),
            });
        }
        Ok(est)
    }

    /// What mapping `dataset` will cost, without running; a [`DataCheckError::TooLarge`] when it
    /// will not fit the memory budget.
    pub fn estimate(&self, dataset: &Dataset) -> Result<Estimate> {
        if dataset.is_empty() {
            return Err(DataCheckError::Empty);
        }
        self.checked_estimate(
            self.points_for(dataset.len()),
            dataset.shape().len(),
            dataset.source().resident_bytes() as u64,
        )
    }

    /// Maps a stratified sample of `dataset` (its pixels scaled to 0..1), measures separability,
    /// summarises the mean images and writes the pictures under `out_dir`.
    pub fn run(&self, dataset: &Dataset, out_dir: &Path) -> Result<DataCheckOutcome> {
        let start = Instant::now();
        if dataset.is_empty() {
            return Err(DataCheckError::Empty);
        }
        let points = self.points_for(dataset.len());
        if points < tsne::MIN_POINTS {
            return Err(DataCheckError::TooFew {
                points,
                min: tsne::MIN_POINTS,
            });
        }
        let shape = dataset.shape();
        let dims = shape.len();
        let estimate =
            self.checked_estimate(points, dims, dataset.source().resident_bytes() as u64)?;
        let indices = if points == dataset.len() {
            (0..points).collect()
        } else {
            dataset.stratified_indices(points, self.config.seed)?
        };
        let mut pixels = vec![0u8; points * dims];
        for (chunk, out) in indices.chunks(256).zip(pixels.chunks_mut(256 * dims)) {
            dataset.read_samples(chunk, out)?;
        }
        let features =
            Array2::from_shape_fn((points, dims), |(i, j)| pixels[i * dims + j] as f32 / 255.0);
        let labels: Vec<u8> = indices.iter().map(|&i| dataset.label(i)).collect();
        let read_seconds = start.elapsed().as_secs_f64();
        self.pipeline(
            Input {
                name: dataset.name().to_string(),
                features: features.view(),
                labels,
                indices,
                class_names: dataset.class_names().to_vec(),
                pixels: Some((&pixels, shape)),
                estimate,
                read_seconds,
            },
            out_dir,
            start,
        )
    }

    /// Maps raw feature vectors (`points x dims`, e.g. a layer's activations) with one label per
    /// row. `class_names` may be empty (labels are then named by number). The configured sample
    /// size applies: a stratified sample of the rows when there are more.
    pub fn run_features(
        &self,
        features: ArrayView2<'_, f32>,
        labels: &[u8],
        class_names: &[String],
        out_dir: &Path,
    ) -> Result<DataCheckOutcome> {
        let start = Instant::now();
        let (rows, dims) = features.dim();
        if rows == 0 {
            return Err(DataCheckError::Empty);
        }
        if labels.len() != rows {
            return Err(DataCheckError::LabelCount {
                labels: labels.len(),
                points: rows,
            });
        }
        if dims == 0 {
            return Err(error::invalid(
                "features",
                "0 columns",
                "at least one feature per row",
            ));
        }
        let classes = labels.iter().map(|&l| l as usize + 1).max().unwrap_or(0);
        let class_names: Vec<String> = if class_names.is_empty() {
            (0..classes).map(|c| c.to_string()).collect()
        } else {
            if let Some(&label) = labels.iter().find(|&&l| l as usize >= class_names.len()) {
                return Err(DataCheckError::LabelOutOfRange {
                    label,
                    classes: class_names.len(),
                });
            }
            class_names.to_vec()
        };
        check_finite(features)?;
        let points = self.points_for(rows);
        if points < tsne::MIN_POINTS {
            return Err(DataCheckError::TooFew {
                points,
                min: tsne::MIN_POINTS,
            });
        }
        let estimate = self.checked_estimate(points, dims, 0)?;
        let (indices, owned) = if points == rows {
            ((0..rows).collect::<Vec<_>>(), None)
        } else {
            let names: Vec<String> = class_names.clone();
            let source = Arc::new(InMemory::new(
                SampleShape::new(1, 1, 1),
                vec![0; rows],
                "labels",
            )?);
            let ds = Dataset::new("features", names, source, labels.to_vec())?;
            let idx = ds.stratified_indices(points, self.config.seed)?;
            let sel = features.select(ndarray::Axis(0), &idx);
            (idx, Some(sel))
        };
        let view = match &owned {
            Some(a) => a.view(),
            None => features.view(),
        };
        let sub_labels: Vec<u8> = indices.iter().map(|&i| labels[i]).collect();
        self.pipeline(
            Input {
                name: "features".into(),
                features: view,
                labels: sub_labels,
                indices,
                class_names,
                pixels: None,
                estimate,
                read_seconds: start.elapsed().as_secs_f64(),
            },
            out_dir,
            start,
        )
    }

    fn pipeline(
        &self,
        input: Input<'_>,
        out_dir: &Path,
        start: Instant,
    ) -> Result<DataCheckOutcome> {
        let cfg = &self.config;
        let n = input.labels.len();
        let mut timings = Timings {
            read: input.read_seconds,
            ..Default::default()
        };
        let bar = progress_bar(
            cfg.progress,
            (cfg.tsne.early_iterations + cfg.tsne.iterations) as u64,
        );

        // PCA.
        let t = Instant::now();
        let fit = pca::fit(input.features, cfg.pca_dims, cfg.seed);
        let reduced = fit.transform(input.features);
        timings.pca = t.elapsed().as_secs_f64();

        // Neighbours in PCA space, shared by t-SNE and the PCA-space measure.
        let t = Instant::now();
        let k_tsne = cfg.tsne.neighbours(n);
        let nb = knn::knn(reduced.view(), k_tsne.max(cfg.k));
        timings.knn = t.elapsed().as_secs_f64();

        // t-SNE.
        let t = Instant::now();
        let map = tsne::tsne_with_neighbors(
            reduced.view(),
            &nb,
            &cfg.tsne,
            &|it| {
                if let Some(b) = &bar {
                    b.set_position(it as u64)
                }
            },
            t,
        )?;
        if let Some(b) = &bar {
            b.finish_and_clear();
        }
        timings.tsne = t.elapsed().as_secs_f64();

        // Measures.
        let t = Instant::now();
        let index_of = |p: usize| input.indices[p];
        let separability_pca = separability::separability(
            &nb.truncate(cfg.k),
            &input.labels,
            &input.class_names,
            &index_of,
        );
        drop(nb);
        let nb2 = knn::knn(map.embedding.view(), cfg.k);
        let separability_2d =
            separability::separability(&nb2, &input.labels, &input.class_names, &index_of);
        let coords: Vec<[f32; 2]> = map
            .embedding
            .rows()
            .into_iter()
            .map(|r| [r[0], r[1]])
            .collect();
        let silhouette = separability::silhouette(&coords, &input.labels, input.class_names.len());
        let chance = separability::chance(&input.labels, input.class_names.len());
        let mean_images = input.pixels.map(|(px, shape)| {
            means::mean_images(px, shape, &input.labels, input.class_names.len())
        });
        let mean_summary = mean_images
            .as_ref()
            .map(|m| means::summarize(m, &input.class_names));
        timings.measures = t.elapsed().as_secs_f64();

        // Pictures.
        let t = Instant::now();
        let mut artifacts = Vec::new();
        if cfg.artifacts {
            let dir = cfg.artifact_dir.trim_end_matches('/');
            let rel = |name: &str| {
                if dir.is_empty() {
                    name.to_string()
                } else {
                    format!("{dir}/{name}")
                }
            };
            let title = format!(
                "t-SNE of {} ({} points, 10-NN accuracy {:.3})",
                input.name, n, separability_2d.accuracy
            );
            let thumbnails = match input.pixels {
                Some((px, shape)) => typical_samples(&coords, &input.labels, &separability_2d)
                    .into_iter()
                    .map(|i| {
                        (
                            i,
                            thumbnail(&px[i * shape.len()..(i + 1) * shape.len()], shape),
                        )
                    })
                    .collect(),
                None => Vec::new(),
            };
            let scatter = plot::Scatter {
                coords: &coords,
                labels: &input.labels,
                class_names: &input.class_names,
                title: &title,
                thumbnails: &thumbnails,
            };
            plot::scatter_png(&scatter, &out_dir.join(rel("map.png")))?;
            artifacts.push(rel("map.png"));
            plot::scatter_svg(&scatter, &out_dir.join(rel("map.svg")))?;
            artifacts.push(rel("map.svg"));
            if let (Some(m), Some((px, shape))) = (&mean_images, input.pixels) {
                means::mean_image_grid_png(m, &out_dir.join(rel("mean_images.png")))?;
                artifacts.push(rel("mean_images.png"));
                let errors = &separability_2d.candidate_label_errors;
                if !errors.is_empty() {
                    let len = shape.len();
                    let sheet: Vec<u8> = errors
                        .iter()
                        .take(50)
                        .flat_map(|e| px[e.point * len..(e.point + 1) * len].iter().copied())
                        .collect();
                    means::thumbnails_png(&sheet, shape, &out_dir.join(rel("label_errors.png")))?;
                    artifacts.push(rel("label_errors.png"));
                }
            }
        }
        timings.pictures = t.elapsed().as_secs_f64();
        timings.total = start.elapsed().as_secs_f64();

        let tsne_summary = TsneSummary {
            perplexity: map.perplexity,
            neighbours: map.neighbours,
            learning_rate: map.learning_rate,
            iterations: cfg.tsne.early_iterations + cfg.tsne.iterations,
            kl_divergence: map.kl_divergence,
            seconds: map.seconds,
        };
        let mut outcome = DataCheckOutcome {
            dataset: input.name,
            config: cfg.clone(),
            indices: input.indices,
            labels: input.labels,
            class_names: input.class_names,
            embedding: map.embedding,
            tsne: tsne_summary,
            pca_explained_ratio: fit.explained_ratio(),
            separability_2d,
            separability_pca,
            silhouette,
            chance,
            mean_images: mean_summary,
            estimate: input.estimate,
            peak_rss_bytes: estimate::peak_rss_bytes(),
            timings,
            findings: Vec::new(),
            verdict: Verdict::Pass,
            artifacts,
        };
        outcome.findings = findings(&outcome);
        outcome.verdict = Verdict::worst(outcome.findings.iter().map(|f| f.verdict));
        Ok(outcome)
    }
}

/// For each label, the point nearest its label's centre in the map among the points its
/// neighbours agree with (a typical sample, for a thumbnail).
fn typical_samples(coords: &[[f32; 2]], labels: &[u8], s: &Separability) -> Vec<usize> {
    let classes = s.confusion.len();
    let mut sums = vec![(0f64, 0f64, 0usize); classes];
    for (c, &l) in coords.iter().zip(labels) {
        let e = &mut sums[l as usize];
        e.0 += c[0] as f64;
        e.1 += c[1] as f64;
        e.2 += 1;
    }
    let wrong: std::collections::HashSet<usize> =
        s.candidate_label_errors.iter().map(|e| e.point).collect();
    (0..classes)
        .filter_map(|l| {
            let (sx, sy, n) = sums[l];
            if n == 0 {
                return None;
            }
            let (mx, my) = (sx / n as f64, sy / n as f64);
            (0..coords.len())
                .filter(|&i| labels[i] as usize == l && !wrong.contains(&i))
                .min_by(|&a, &b| {
                    let d = |i: usize| {
                        (coords[i][0] as f64 - mx).powi(2) + (coords[i][1] as f64 - my).powi(2)
                    };
                    d(a).total_cmp(&d(b)).then(a.cmp(&b))
                })
        })
        .collect()
}

/// A sample as an RGB picture (grey replicated), its longest side at most 40 pixels.
fn thumbnail(sample: &[u8], shape: SampleShape) -> image::RgbImage {
    let plane = shape.plane();
    let (h, w) = (shape.height.max(1), shape.width.max(1));
    let big = h.max(w);
    let target = if big <= 40 { big * (40 / big) } else { 40 };
    let (tw, th) = ((w * target / big).max(1), (h * target / big).max(1));
    image::RgbImage::from_fn(tw as u32, th as u32, |x, y| {
        let sx = (x as usize * w / tw).min(w - 1);
        let sy = (y as usize * h / th).min(h - 1);
        let at = |c: usize| {
            sample
                .get(c * plane + sy * shape.width + sx)
                .copied()
                .unwrap_or(0)
        };
        if shape.channels >= 3 {
            image::Rgb([at(0), at(1), at(2)])
        } else {
            let g = at(0);
            image::Rgb([g, g, g])
        }
    })
}

fn progress_bar(on: bool, len: u64) -> Option<indicatif::ProgressBar> {
    if !on {
        return None;
    }
    let bar = indicatif::ProgressBar::new(len);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "t-SNE {bar:40} {pos}/{len} iterations, {elapsed} (eta {eta})",
    ) {
        bar.set_style(style);
    }
    Some(bar)
}

/// How far the accuracy gets from chance towards 1.
pub fn lift(accuracy: f64, chance: f64) -> f64 {
    if chance >= 1.0 {
        1.0
    } else {
        (accuracy - chance) / (1.0 - chance)
    }
}

fn pairs_text(s: &Separability, count: usize) -> String {
    s.confusable_pairs
        .iter()
        .take(count)
        .map(|p| format!("{}/{} ({:.1}%)", p.a_name, p.b_name, 100.0 * p.rate))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The findings of an outcome (its verdict is their worst).
pub fn findings(o: &DataCheckOutcome) -> Vec<Finding> {
    let cfg = &o.config;
    let s2 = &o.separability_2d;
    let acc = s2.accuracy;
    let l = lift(acc, o.chance);
    let mut out = Vec::new();
    let (verdict, message, remedy) = if l < cfg.fail_lift {
        (
            Verdict::Fail,
            format!(
                "the labels carry (almost) no information: {}-NN accuracy in the map {:.3} against \
                 {:.3} for a label-blind guess ({:.0}% of the way from chance to 1; fail below {:.0}%)",
                s2.k,
                acc,
                o.chance,
                100.0 * l,
                100.0 * cfg.fail_lift
            ),
            "check that labels and samples line up (a shuffled, sorted or misaligned label file) \
             before training anything"
                .to_string(),
        )
    } else if acc < cfg.pass_accuracy {
        (
            Verdict::Warn,
            format!(
                "the labels separate poorly: {}-NN accuracy in the map {:.3} (pass at {:.2}), \
                 in PCA space {:.3}, chance {:.3}; most mixed: {}",
                s2.k,
                acc,
                cfg.pass_accuracy,
                o.separability_pca.accuracy,
                o.chance,
                pairs_text(s2, 3)
            ),
            "expect a model to need learned features (the raw inputs do not separate); compare \
             the mean images' value ranges and look at the confusable pairs and candidate label \
             errors"
                .to_string(),
        )
    } else {
        (
            Verdict::Pass,
            format!(
                "the labels separate: {}-NN accuracy in the map {:.3} (pass at {:.2}), in PCA \
                 space {:.3}, chance {:.3}",
                s2.k, acc, cfg.pass_accuracy, o.separability_pca.accuracy, o.chance
            ),
            String::new(),
        )
    };
    out.push(Finding {
        check: "separability".into(),
        verdict,
        subject: "labels".into(),
        measured: acc,
        threshold: cfg.pass_accuracy,
        message,
        remedy,
    });
    for p in s2.confusable_pairs.iter().take(3) {
        let warn = p.rate >= cfg.confusable_rate;
        out.push(Finding {
            check: "confusable_pair".into(),
            verdict: if warn { Verdict::Warn } else { Verdict::Pass },
            subject: format!("{}/{}", p.a_name, p.b_name),
            measured: p.rate,
            threshold: cfg.confusable_rate,
            message: format!(
                "{} of the {} samples of {} and {} are voted the other label by their {} nearest \
                 neighbours in the map ({:.1}%)",
                p.mixed,
                o.separability_2d.per_label[p.a as usize].count
                    + o.separability_2d.per_label[p.b as usize].count,
                p.a_name,
                p.b_name,
                s2.k,
                100.0 * p.rate
            ),
            remedy: if warn {
                format!(
                    "look at samples of {} and {} side by side (the mean images, the candidate label errors)",
                    p.a_name, p.b_name
                )
            } else {
                String::new()
            },
        });
    }
    let errors = &s2.candidate_label_errors;
    let share = errors.len() as f64 / o.points().max(1) as f64;
    let warn = share > cfg.label_error_share;
    let listed: Vec<String> = errors
        .iter()
        .take(10)
        .map(|e| {
            format!(
                "#{} ({} among {})",
                e.index,
                o.class_names
                    .get(e.label as usize)
                    .cloned()
                    .unwrap_or_default(),
                o.class_names
                    .get(e.neighbours_label as usize)
                    .cloned()
                    .unwrap_or_default()
            )
        })
        .collect();
    out.push(Finding {
        check: "candidate_label_errors".into(),
        verdict: if warn { Verdict::Warn } else { Verdict::Pass },
        subject: format!("{} samples", errors.len()),
        measured: share,
        threshold: cfg.label_error_share,
        message: if errors.is_empty() {
            "no sample has all its neighbours in the map under another label".into()
        } else {
            format!(
                "{} samples ({:.1}%) have all {} neighbours in the map under another label: {}{}",
                errors.len(),
                100.0 * share,
                s2.k,
                listed.join(", "),
                if errors.len() > 10 { ", ..." } else { "" }
            )
        },
        remedy: if warn {
            "inspect the listed samples (label_errors.png): relabel or drop the mislabelled ones"
                .into()
        } else {
            String::new()
        },
    });
    if let Some(c) = o.mean_images.as_ref().and_then(|m| m.closest.as_ref()) {
        let name = |l: u8| o.class_names.get(l as usize).cloned().unwrap_or_default();
        out.push(Finding {
            check: "closest_mean_images".into(),
            verdict: Verdict::Pass,
            subject: format!("{}/{}", name(c.a), name(c.b)),
            measured: c.rms,
            threshold: f64::NAN,
            message: format!(
                "the closest label means are {} and {}: distance {:.1} (RMS {:.2} per pixel value, 0..255)",
                name(c.a),
                name(c.b),
                c.distance,
                c.rms
            ),
            remedy: String::new(),
        });
    }
    out
}

/// The step's report for the checklist (`Step::Data`).
pub fn step_report(o: &DataCheckOutcome) -> StepReport {
    let mut r = StepReport::new(Step::Data);
    r.seconds = o.timings.total;
    r.metric("points", o.points() as f64);
    r.metric("knn_accuracy_2d", o.separability_2d.accuracy);
    r.metric("knn_accuracy_pca", o.separability_pca.accuracy);
    r.metric("chance", o.chance);
    // The whole t-SNE: neighbours in PCA space, similarities, optimisation.
    r.metric("tsne_seconds", o.timings.knn + o.timings.tsne);
    r.metric("lift_2d", lift(o.separability_2d.accuracy, o.chance));
    r.metric("silhouette_2d", o.silhouette.overall);
    r.metric("classes", o.class_names.len() as f64);
    r.metric(
        "pca_dims",
        o.config.pca_dims.min(o.estimate.pca_dims) as f64,
    );
    r.metric("pca_explained_ratio", o.pca_explained_ratio);
    r.metric("pca_seconds", o.timings.pca);
    r.metric("knn_seconds", o.timings.knn);
    r.metric("kl_divergence", o.tsne.kl_divergence);
    r.metric("perplexity", o.tsne.perplexity);
    r.metric("iterations", o.tsne.iterations as f64);
    r.metric(
        "candidate_label_errors",
        o.separability_2d.candidate_label_errors.len() as f64,
    );
    r.metric("estimated_bytes", o.estimate.bytes as f64);
    r.metric("estimated_seconds", o.estimate.seconds);
    r.metric(
        "peak_rss_bytes",
        o.peak_rss_bytes.map_or(f64::NAN, |b| b as f64),
    );
    for f in &o.findings {
        r.push(f.clone());
    }
    let per_label: Vec<serde_json::Value> = (0..o.class_names.len())
        .map(|l| {
            serde_json::json!({
                "label": l,
                "name": o.class_names[l],
                "count": o.separability_2d.per_label.get(l).map_or(0, |a| a.count),
                "knn_accuracy_2d": o.separability_2d.per_label.get(l).map(|a| a.accuracy),
                "knn_accuracy_pca": o.separability_pca.per_label.get(l).map(|a| a.accuracy),
                "silhouette_2d": o.silhouette.per_label.get(l),
            })
        })
        .collect();
    let errors = &o.separability_2d.candidate_label_errors;
    r.details = serde_json::json!({
        "dataset": o.dataset,
        "config": o.config,
        "estimate": o.estimate,
        "timings": o.timings,
        "tsne": o.tsne,
        "per_label": per_label,
        "confusable_pairs_2d": o.separability_2d.confusable_pairs.iter().take(10).collect::<Vec<_>>(),
        "confusable_pairs_pca": o.separability_pca.confusable_pairs.iter().take(10).collect::<Vec<_>>(),
        "confusion_2d": o.separability_2d.confusion,
        "candidate_label_errors": {
            "count": errors.len(),
            "listed": errors.iter().take(100).collect::<Vec<_>>(),
        },
        "mean_images": o.mean_images,
    });
    r.artifacts = o.artifacts.clone();
    // A finding with a NaN threshold serialises as null; the verdict is the findings' worst.
    r.verdict = Verdict::worst(r.findings.iter().map(|f| f.verdict));
    r
}

/// The same samples as `dataset` with their labels shuffled (seeded): what labels carrying no
/// information look like. Reads every sample into memory.
pub fn with_shuffled_labels(dataset: &Dataset, seed: u64) -> Result<Dataset> {
    if dataset.is_empty() {
        return Err(DataCheckError::Empty);
    }
    let shape = dataset.shape();
    let n = dataset.len();
    let mut pixels = vec![0u8; n * shape.len()];
    let all: Vec<usize> = (0..n).collect();
    for (chunk, out) in all.chunks(256).zip(pixels.chunks_mut(256 * shape.len())) {
        dataset.read_samples(chunk, out)?;
    }
    let mut labels = dataset.labels().to_vec();
    labels.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let source = Arc::new(InMemory::new(
        shape,
        pixels,
        format!("{} (labels shuffled)", dataset.name()),
    )?);
    Ok(Dataset::new(
        format!("{}-shuffled", dataset.name()),
        dataset.class_names().to_vec(),
        source,
        labels,
    )?)
}
