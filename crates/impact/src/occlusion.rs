//! The engine: occlusion, its inverse and model impact, for any function from a `Tensor<4>`
//! batch to `[batch, classes]` logits.
//!
//! Every window position gives one perturbed copy of the input, built on the host; the copies go
//! through the model in batches whose size comes from a memory budget (bytes) divided by an
//! estimate of one sample's activation bytes, so a large model never holds every perturbation at
//! once (Captum's `FeatureAblation` needed 144 GB for one ResNet-50, captum#646). The caller runs
//! the model without autodiff (a module from `valid()`, or built on a plain device); then nothing
//! keeps a graph between batches. Probabilities are the softmax of the logits, in `f64`.

use std::time::Instant;

use burn::prelude::*;
use model_core::inference::InferenceForward;
use model_core::models::Classifier;
use model_core::tap::{Tap, TapDetail};
use model_core::{Normalization, SampleShape};
use serde::{Deserialize, Serialize};

use crate::error::ImpactError;
use crate::geometry::{Map, Window, average};
use crate::input::{Fill, Input, Target};

/// The model as the engine runs it: logits `[batch, classes]` for a batch of inputs.
///
/// Any `Fn(Tensor<4>) -> Tensor<2>` is one (`|x| model.forward(x)`). A
/// [`InferenceForward`] is one that also computes inputs near a reference incrementally: every
/// perturbed copy the engine makes equals one reference input (the unoccluded input, the
/// all-fill input, the base) outside its window, and the engine says which.
pub trait Forward {
    /// Logits of `images`.
    fn logits(&self, images: Tensor<4>) -> Tensor<2>;

    /// Logits of `images`, which equal `reference` (one input, channels first) outside a window;
    /// the same figures as [`Self::logits`], however computed.
    fn logits_near(&self, reference: &[f32], images: Tensor<4>) -> Tensor<2> {
        let _ = reference;
        self.logits(images)
    }
}

impl<F: Fn(Tensor<4>) -> Tensor<2>> Forward for F {
    fn logits(&self, images: Tensor<4>) -> Tensor<2> {
        self(images)
    }
}

impl<M: Classifier> Forward for InferenceForward<'_, M> {
    fn logits(&self, images: Tensor<4>) -> Tensor<2> {
        self.forward(images)
    }

    fn logits_near(&self, reference: &[f32], images: Tensor<4>) -> Tensor<2> {
        self.forward_near(reference, images)
    }
}

/// The memory budget when none is given: 256 MiB of activations per batch.
pub const DEFAULT_MEMORY_BUDGET: usize = 256 << 20;

/// How an occlusion run went through the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunStats {
    /// Window positions evaluated (not counting the one or two reference forwards).
    pub windows: usize,
    /// Forward calls made (the reference inputs ride in the first batch).
    pub forward_calls: usize,
    /// The largest batch sent through the model.
    pub batch_size: usize,
    /// Wall time of the whole run (host assembly, forwards, read-back).
    pub seconds: f64,
}

impl RunStats {
    pub fn windows_per_second(&self) -> f64 {
        self.windows as f64 / self.seconds.max(1e-12)
    }
}

/// The occlusion maps of one input: how much the target's probability and logit drop when each
/// window is filled, averaged per pixel over the windows covering it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OcclusionMaps {
    pub target: usize,
    /// The label the model predicts for the unoccluded input.
    pub predicted: usize,
    pub window: Window,
    /// Rows and columns of window positions.
    pub grid: [usize; 2],
    /// The softmax of the unoccluded input's logits.
    pub probabilities: Vec<f32>,
    pub base_probability: f32,
    pub base_logit: f32,
    /// Per pixel: unoccluded probability minus occluded probability of the target.
    pub probability_drop: Map,
    /// Per pixel: unoccluded logit minus occluded logit of the target.
    pub logit_drop: Map,
    /// The target's probability with each window occluded, in grid order.
    pub window_probability: Vec<f32>,
    pub stats: RunStats,
}

/// The inverse maps of one input: all fill, only the window shows the input; the target's
/// probability per window, averaged per pixel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InverseMaps {
    pub target: usize,
    pub window: Window,
    pub grid: [usize; 2],
    /// The target's probability on the all-fill input (nothing shown).
    pub fill_probability: f32,
    /// Per pixel: the target's probability when the windows covering it show the input.
    pub probability: Map,
    /// The target's probability per window, in grid order.
    pub window_probability: Vec<f32>,
    pub stats: RunStats,
}

/// Model impact on a base input (the dataset's mean image): for each highlighted window, which
/// label's probability rises most, and by how much.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImpactMaps {
    pub window: Window,
    pub grid: [usize; 2],
    /// The softmax of the base input's logits.
    pub base_probabilities: Vec<f32>,
    /// Per pixel: the label whose probability rises most (mean rise over the windows covering
    /// the pixel); -1 where no window covers the pixel.
    pub labels: Vec<i32>,
    /// Per pixel: that label's mean probability rise (0 where no window covers the pixel).
    pub strength: Map,
    /// Per window, in grid order: the label whose probability rises most.
    pub window_labels: Vec<usize>,
    /// Per window: that label's probability rise.
    pub window_rise: Vec<f32>,
    pub stats: RunStats,
}

/// Occlusion settings; see the module documentation. Built with [`Occlusion::builder`].
///
/// The methods take the model as `forward`, a [`Forward`]: any `Fn(Tensor<4>) -> Tensor<2>`
/// returning logits (`|x| model.forward(x)` for a [`Classifier`]), or an [`InferenceForward`],
/// which recomputes of each perturbed copy only what its window reaches; and the `device` the
/// perturbed inputs are created on: pass a model from `valid()` and a plain device
/// (`device.clone().inner()`) so no autodiff graph is built; [`crate::ImpactCheck::run`] does both
/// itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Occlusion {
    size: Option<(usize, usize)>,
    stride: Option<(usize, usize)>,
    fill: Fill,
    highlight: Fill,
    target: Target,
    normalization: Option<Normalization>,
    memory_budget: usize,
    sample_bytes: Option<usize>,
    max_batch: Option<usize>,
}

impl Default for Occlusion {
    fn default() -> Self {
        Occlusion {
            size: None,
            stride: None,
            fill: Fill::Black,
            highlight: Fill::White,
            target: Target::Predicted,
            normalization: None,
            memory_budget: DEFAULT_MEMORY_BUDGET,
            sample_bytes: None,
            max_batch: None,
        }
    }
}

/// Builds an [`Occlusion`].
#[derive(Debug, Clone, Default)]
pub struct OcclusionBuilder {
    inner: Occlusion,
}

impl OcclusionBuilder {
    /// A square window of `size` (default: a fifth of the input's smaller side).
    pub fn window(mut self, size: usize) -> Self {
        self.inner.size = Some((size, size));
        self
    }

    /// A `height x width` window.
    pub fn window_rect(mut self, height: usize, width: usize) -> Self {
        self.inner.size = Some((height, width));
        self
    }

    /// The step between window positions along both axes (default: a third of the window).
    pub fn stride(mut self, stride: usize) -> Self {
        self.inner.stride = Some((stride, stride));
        self
    }

    /// Steps along rows and columns.
    pub fn strides(mut self, stride_y: usize, stride_x: usize) -> Self {
        self.inner.stride = Some((stride_y, stride_x));
        self
    }

    /// What fills an occluded window, and the background of the inverse mode (default black).
    pub fn fill(mut self, fill: Fill) -> Self {
        self.inner.fill = fill;
        self
    }

    /// What a highlighted window holds in model impact (default white).
    pub fn highlight(mut self, fill: Fill) -> Self {
        self.inner.highlight = fill;
        self
    }

    /// The label followed (default: the predicted one).
    pub fn target(mut self, target: Target) -> Self {
        self.inner.target = target;
        self
    }

    /// The normalisation the model's inputs went through: it gives black and white their values.
    pub fn normalization(mut self, normalization: Normalization) -> Self {
        self.inner.normalization = Some(normalization);
        self
    }

    /// Bytes of activations one batch may take (default [`DEFAULT_MEMORY_BUDGET`]).
    pub fn memory_budget(mut self, bytes: usize) -> Self {
        self.inner.memory_budget = bytes;
        self
    }

    /// Activation bytes of one sample through the model (default: 64 times the input's bytes;
    /// [`estimate_sample_bytes`] measures a [`Classifier`]'s).
    pub fn sample_bytes(mut self, bytes: usize) -> Self {
        self.inner.sample_bytes = Some(bytes);
        self
    }

    /// A cap on the batch size on top of the budget (1: one window at a time).
    pub fn max_batch(mut self, n: usize) -> Self {
        self.inner.max_batch = Some(n);
        self
    }

    pub fn build(self) -> Result<Occlusion, ImpactError> {
        let o = self.inner;
        if let Some((h, w)) = o.size
            && (h == 0 || w == 0)
        {
            return Err(ImpactError::Window {
                window_h: h,
                window_w: w,
                height: 0,
                width: 0,
            });
        }
        if let Some((y, x)) = o.stride
            && (y == 0 || x == 0)
        {
            return Err(ImpactError::Stride {
                stride_y: y,
                stride_x: x,
            });
        }
        if o.memory_budget == 0 || o.sample_bytes == Some(0) || o.max_batch == Some(0) {
            return Err(ImpactError::Option {
                what: "the memory budget, sample bytes and batch cap must be at least 1".into(),
            });
        }
        Ok(o)
    }
}

/// Estimated activation bytes of one sample through `model`: one traced forward of a zero
/// input, the input and every traced layer output in `f32`, doubled for the buffers a layer
/// holds while it runs (im2col, a residual block's inner outputs).
pub fn estimate_sample_bytes<M: Classifier>(model: &M, device: &Device) -> usize {
    let shape = model.input_shape();
    let x = Tensor::<4>::zeros([1, shape.channels, shape.height, shape.width], device);
    let mut tap = Tap::new(TapDetail::Timing);
    let _ = model.forward_tapped(x, &mut tap);
    let trace = tap.forward_trace(model);
    let values: usize = shape.len()
        + trace
            .layers
            .iter()
            .map(|l| l.output_shape.iter().skip(1).product::<usize>())
            .sum::<usize>();
    values * 4 * 2
}

impl Occlusion {
    pub fn builder() -> OcclusionBuilder {
        OcclusionBuilder::default()
    }

    /// The window used on inputs of `shape` (the defaults resolved), checked against it.
    pub fn window_for(&self, shape: SampleShape) -> Result<Window, ImpactError> {
        let default = Window::default_for(shape.height, shape.width);
        let (height, width) = self.size.unwrap_or((default.height, default.width));
        let (stride_y, stride_x) = self
            .stride
            .unwrap_or(((height / 3).max(1), (width / 3).max(1)));
        let window = Window {
            height,
            width,
            stride_y,
            stride_x,
        };
        window.check(shape.height, shape.width)?;
        Ok(window)
    }

    /// The batch size for inputs of `shape`: the memory budget over one sample's activation
    /// bytes, at least 1, at most the cap.
    pub fn batch_size(&self, shape: SampleShape) -> usize {
        let per_sample = self.sample_bytes.unwrap_or(shape.len() * 4 * 64).max(1);
        let n = (self.memory_budget / per_sample).max(1);
        self.max_batch.map_or(n, |cap| n.min(cap))
    }

    pub fn fill(&self) -> &Fill {
        &self.fill
    }

    pub fn highlight(&self) -> &Fill {
        &self.highlight
    }

    pub fn normalization(&self) -> Option<&Normalization> {
        self.normalization.as_ref()
    }

    /// The same settings with another target.
    pub fn with_target(mut self, target: Target) -> Self {
        self.target = target;
        self
    }

    /// The same settings with another normalisation.
    pub fn with_normalization(mut self, normalization: Normalization) -> Self {
        self.normalization = Some(normalization);
        self
    }

    /// The same settings with another per-sample activation estimate.
    pub fn with_sample_bytes(mut self, bytes: usize) -> Self {
        self.sample_bytes = Some(bytes.max(1));
        self
    }

    /// The logits of `input` itself, then of one copy per window position with the window
    /// painted with `paint`, in the same batches (occlusion paints the fill, model impact the
    /// highlight).
    fn painted<F>(
        &self,
        forward: &F,
        input: &Input,
        paint: &Fill,
        device: &Device,
    ) -> Result<(Window, Vec<(usize, usize)>, Logits), ImpactError>
    where
        F: Forward + ?Sized,
    {
        let shape = input.shape();
        let window = self.window_for(shape)?;
        let positions = window.positions(shape.height, shape.width)?;
        let values = paint.resolve(shape.channels, self.normalization.as_ref())?;
        let eval = Evaluator::new(forward, device, self.batch_size(shape), shape);
        let all = eval.run(1 + positions.len(), Some(input.values()), |i, out| {
            out.copy_from_slice(input.values());
            if i > 0 {
                paint_fill(out, shape, &window, positions[i - 1], &values);
            }
        })?;
        Ok((window, positions, all))
    }

    /// Occlusion: the drop in the target's probability and logit for every window filled.
    pub fn occlude<F>(
        &self,
        forward: &F,
        input: &Input,
        device: &Device,
    ) -> Result<OcclusionMaps, ImpactError>
    where
        F: Forward + ?Sized,
    {
        let started = Instant::now();
        let shape = input.shape();
        let (window, positions, all) = self.painted(forward, input, &self.fill, device)?;
        let classes = all.classes;
        let base_logits = &all.logits[..classes];
        let predicted = argmax(base_logits);
        let target = self.resolve_target(predicted, classes)?;
        let probabilities = softmax(base_logits);
        let (mut prob_drop, mut logit_drop, mut window_probability) =
            (Vec::new(), Vec::new(), Vec::new());
        for row in all.logits[classes..].chunks_exact(classes) {
            let p = softmax(row)[target];
            window_probability.push(p);
            prob_drop.push(probabilities[target] - p);
            logit_drop.push(base_logits[target] - row[target]);
        }
        Ok(OcclusionMaps {
            target,
            predicted,
            window,
            grid: window.grid(shape.height, shape.width)?,
            base_probability: probabilities[target],
            base_logit: base_logits[target],
            probability_drop: average(shape.height, shape.width, &window, &positions, &prob_drop),
            logit_drop: average(shape.height, shape.width, &window, &positions, &logit_drop),
            probabilities,
            window_probability,
            stats: RunStats {
                windows: positions.len(),
                forward_calls: all.calls,
                batch_size: all.largest,
                seconds: started.elapsed().as_secs_f64(),
            },
        })
    }

    /// The inverse mode: an all-fill input in which only the window shows `input`; the target's
    /// probability per window (the target by default is the label predicted for `input`).
    pub fn inverse<F>(
        &self,
        forward: &F,
        input: &Input,
        device: &Device,
    ) -> Result<InverseMaps, ImpactError>
    where
        F: Forward + ?Sized,
    {
        let started = Instant::now();
        let shape = input.shape();
        let window = self.window_for(shape)?;
        let positions = window.positions(shape.height, shape.width)?;
        let fill = self
            .fill
            .resolve(shape.channels, self.normalization.as_ref())?;
        let eval = Evaluator::new(forward, device, self.batch_size(shape), shape);
        // The input itself (for the predicted label), the all-fill input, then one all-fill copy
        // per window showing the input there, in the same batches; all but the first equal the
        // all-fill input outside their window.
        let mut all_fill = vec![0f32; shape.len()];
        paint_all(&mut all_fill, shape, &fill);
        let all = eval.run(2 + positions.len(), Some(&all_fill), |i, out| {
            if i == 0 {
                out.copy_from_slice(input.values());
            } else {
                paint_all(out, shape, &fill);
                if i > 1 {
                    paint_input(out, input.values(), shape, &window, positions[i - 2]);
                }
            }
        })?;
        let classes = all.classes;
        let target = self.resolve_target(argmax(&all.logits[..classes]), classes)?;
        let fill_probability = softmax(&all.logits[classes..2 * classes])[target];
        let window_probability: Vec<f32> = all.logits[2 * classes..]
            .chunks_exact(classes)
            .map(|row| softmax(row)[target])
            .collect();
        Ok(InverseMaps {
            target,
            window,
            grid: window.grid(shape.height, shape.width)?,
            fill_probability,
            probability: average(
                shape.height,
                shape.width,
                &window,
                &positions,
                &window_probability,
            ),
            window_probability,
            stats: RunStats {
                windows: positions.len(),
                forward_calls: all.calls,
                batch_size: all.largest,
                seconds: started.elapsed().as_secs_f64(),
            },
        })
    }

    /// Model impact on `base` (the dataset's mean image): each window highlighted in turn, the
    /// label whose probability rises most and by how much.
    pub fn model_impact<F>(
        &self,
        forward: &F,
        base: &Input,
        device: &Device,
    ) -> Result<ImpactMaps, ImpactError>
    where
        F: Forward + ?Sized,
    {
        let started = Instant::now();
        let shape = base.shape();
        let (window, positions, all) = self.painted(forward, base, &self.highlight, device)?;
        let classes = all.classes;
        let base_probabilities = softmax(&all.logits[..classes]);
        // Rise of every label per window, label-major for averaging.
        let n = positions.len();
        let mut rises = vec![0f32; classes * n];
        for (w, row) in all.logits[classes..].chunks_exact(classes).enumerate() {
            for (l, p) in softmax(row).into_iter().enumerate() {
                rises[l * n + w] = p - base_probabilities[l];
            }
        }
        let (mut window_labels, mut window_rise) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for w in 0..n {
            let column: Vec<f32> = (0..classes).map(|l| rises[l * n + w]).collect();
            let best = argmax(&column);
            window_labels.push(best);
            window_rise.push(column[best]);
        }
        let (h, wd) = (shape.height, shape.width);
        let per_label: Vec<Map> = (0..classes)
            .map(|l| average(h, wd, &window, &positions, &rises[l * n..(l + 1) * n]))
            .collect();
        let covered = average(h, wd, &window, &positions, &vec![1.0; n]);
        let mut labels = vec![-1i32; h * wd];
        let mut strength = vec![0f32; h * wd];
        for p in 0..h * wd {
            if covered.values[p] == 0.0 {
                continue;
            }
            let column: Vec<f32> = per_label.iter().map(|m| m.values[p]).collect();
            let best = argmax(&column);
            labels[p] = best as i32;
            strength[p] = column[best];
        }
        Ok(ImpactMaps {
            window,
            grid: window.grid(h, wd)?,
            base_probabilities,
            labels,
            strength: Map {
                height: h,
                width: wd,
                values: strength,
            },
            window_labels,
            window_rise,
            stats: RunStats {
                windows: n,
                forward_calls: all.calls,
                batch_size: all.largest,
                seconds: started.elapsed().as_secs_f64(),
            },
        })
    }

    fn resolve_target(&self, predicted: usize, classes: usize) -> Result<usize, ImpactError> {
        match self.target {
            Target::Predicted => Ok(predicted),
            Target::Label(l) if l < classes => Ok(l),
            Target::Label(l) => Err(ImpactError::Target { target: l, classes }),
        }
    }
}

/// Sends perturbed copies through the model in batches.
struct Evaluator<'a, F: ?Sized> {
    forward: &'a F,
    device: &'a Device,
    batch: usize,
    shape: SampleShape,
}

struct Logits {
    /// `[n, classes]`, row-major.
    logits: Vec<f32>,
    classes: usize,
    calls: usize,
    largest: usize,
}

impl<'a, F: Forward + ?Sized> Evaluator<'a, F> {
    fn new(forward: &'a F, device: &'a Device, batch: usize, shape: SampleShape) -> Self {
        Evaluator {
            forward,
            device,
            batch: batch.max(1),
            shape,
        }
    }

    /// The logits of `n` inputs, input `i` written into its slice by `make(i, slice)`; inputs
    /// that equal `reference` but in a window go to [`Forward::logits_near`].
    fn run(
        &self,
        n: usize,
        reference: Option<&[f32]>,
        make: impl Fn(usize, &mut [f32]),
    ) -> Result<Logits, ImpactError> {
        let len = self.shape.len();
        let mut out = Logits {
            logits: Vec::new(),
            classes: 0,
            calls: 0,
            largest: 0,
        };
        let mut start = 0;
        while start < n {
            let m = self.batch.min(n - start);
            let mut values = vec![0f32; m * len];
            for (k, slot) in values.chunks_exact_mut(len).enumerate() {
                make(start + k, slot);
            }
            let dims = [m, self.shape.channels, self.shape.height, self.shape.width];
            let x = Tensor::<4>::from_data(TensorData::new(values, dims), self.device);
            let logits = match reference {
                Some(r) => self.forward.logits_near(r, x),
                None => self.forward.logits(x),
            };
            let [rows, classes] = logits.dims();
            if rows != m || classes == 0 || (out.classes != 0 && classes != out.classes) {
                return Err(ImpactError::Model {
                    what: format!(
                        "a batch of {m} inputs gave logits of shape [{rows}, {classes}]; expected [{m}, classes]"
                    ),
                });
            }
            let values = logits
                .try_into_vec_as::<f32>()
                .map_err(|e| ImpactError::Model {
                    what: format!("reading the logits back: {e:?}"),
                })?;
            out.logits.extend(values);
            out.classes = classes;
            out.calls += 1;
            out.largest = out.largest.max(m);
            start += m;
        }
        Ok(out)
    }
}

fn paint_fill(
    out: &mut [f32],
    shape: SampleShape,
    w: &Window,
    (y0, x0): (usize, usize),
    fill: &[f32],
) {
    let plane = shape.plane();
    for (c, &v) in fill.iter().enumerate() {
        for y in y0..y0 + w.height {
            let row = c * plane + y * shape.width;
            out[row + x0..row + x0 + w.width].fill(v);
        }
    }
}

fn paint_all(out: &mut [f32], shape: SampleShape, fill: &[f32]) {
    for (c, &v) in fill.iter().enumerate() {
        out[c * shape.plane()..(c + 1) * shape.plane()].fill(v);
    }
}

fn paint_input(
    out: &mut [f32],
    input: &[f32],
    shape: SampleShape,
    w: &Window,
    (y0, x0): (usize, usize),
) {
    let plane = shape.plane();
    for c in 0..shape.channels {
        for y in y0..y0 + w.height {
            let row = c * plane + y * shape.width;
            out[row + x0..row + x0 + w.width].copy_from_slice(&input[row + x0..row + x0 + w.width]);
        }
    }
}

/// Softmax of one row of logits, computed in `f64`.
pub(crate) fn softmax(row: &[f32]) -> Vec<f32> {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let exps: Vec<f64> = row.iter().map(|&v| (v as f64 - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.iter().map(|e| (e / sum) as f32).collect()
}

/// Index of the largest value (the first on ties; NaN never wins).
pub(crate) fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] || row[best].is_nan() {
            best = i;
        }
    }
    best
}
