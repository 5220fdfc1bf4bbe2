//! The Tap: per-layer instrumentation of one forward and backward pass.
//!
//! Steps 3 (timings) and 4 (gradients) need, for every layer, its forward and backward time and
//! the values flowing through it: its top blob's `data` (the output) and `diff` (the gradient
//! arriving at that output). Burn 0.22 keeps gradients only for leaf tensors and runs one opaque
//! backward pass, so the Tap cuts the graph at layer boundaries: each layer's output is handed to
//! the next layer as a fresh leaf, and the backward pass runs segment by segment, last layer
//! first, each segment seeded with the diff that arrived at its output (a vector-Jacobian product
//! `sum(out * diff)`). Parameter gradients are summed across segments and equal those of the uncut
//! graph (property-tested).
//!
//! A model joins by routing each layer through [`Tap::layer`] in its forward pass:
//!
//! ```
//! use burn::prelude::*;
//! use burn::nn::{Linear, LinearConfig, Relu};
//! use model_core::tap::{Tap, TapDetail};
//!
//! #[derive(Module, Debug)]
//! struct Mlp { fc1: Linear, fc2: Linear }
//!
//! impl Mlp {
//!     fn forward(&self, x: Tensor<2>, tap: &mut Tap) -> Tensor<2> {
//!         let x = tap.layer("fc1", "InnerProduct+ReLU", x, |x| Relu::new().forward(self.fc1.forward(x)));
//!         tap.layer("fc2", "InnerProduct", x, |x| self.fc2.forward(x))
//!     }
//! }
//!
//! let device = Device::flex().autodiff();
//! let mlp = Mlp { fc1: LinearConfig::new(4, 8).init(&device), fc2: LinearConfig::new(8, 2).init(&device) };
//! let x = Tensor::<2>::random([3, 4], burn::tensor::Distribution::Default, &device);
//!
//! let mut tap = Tap::new(TapDetail::Full);
//! let loss = mlp.forward(x, &mut tap).powi_scalar(2).mean();
//! let (grads, trace) = tap.backward(loss, &mlp);
//! let trace = trace.expect("the tap was on");
//! assert_eq!(trace.layers.iter().map(|l| l.name.as_str()).collect::<Vec<_>>(), ["fc1", "fc2"]);
//! assert!(trace.layers[0].diff.is_some());
//! assert_eq!(trace.params[0].name, "fc1.weight");
//! # let _ = grads;
//! ```
//!
//! With the tap off ([`Tap::off`]) `layer` calls the closure and nothing else: no cuts, no syncs,
//! no statistics.
//!
//! Statistics are computed on the device the blob lives on, and only scalars come to the host's
//! bookkeeping. On a CPU device (flex) the device's memory is the host's, so each blob is reduced
//! in place: one fused pass over the tensor's own buffer (min, max, sum, sum |x| together, NaN
//! and Inf counted in a second pass only when a sum is not finite), no copy and no tensor
//! operation, every blob of the iteration in parallel chunks when the trace is taken. On a GPU
//! device a large blob is reduced by four device reductions and four scalars come back; a blob of
//! at most [`HOST_REDUCED_MAX`] values (a bias, the logits) comes back whole, since the fixed
//! cost of a tensor operation outweighs its reduction. There, everything comes back in one read
//! per iteration (NaN and Inf counts of a large blob cost a second read only when it holds a
//! non-finite value). Either way NaN and Inf are counted exactly and a NaN makes the mean and
//! mean |x| NaN; min and max skip NaN on the CPU (NaN only when every value is), and follow the
//! backend's reductions on a GPU.

use std::time::Instant;

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::prelude::*;
use burn::tensor::Gradients;
use serde::{Deserialize, Serialize};

use crate::host_reduce;

/// How much the tap records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TapDetail {
    /// The plain forward and backward: nothing recorded.
    #[default]
    Off,
    /// Per-layer forward and backward times (the device synchronised around each).
    Timing,
    /// Times, plus statistics of every layer's `data` and `diff` and of every parameter's value
    /// and gradient.
    Full,
}

/// Statistics of one blob (a layer's output or its gradient, a parameter or its gradient).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BlobStats {
    /// Number of values.
    pub count: usize,
    pub min: f32,
    pub max: f32,
    pub mean: f32,
    /// Mean of the absolute values.
    pub mean_abs: f32,
    pub nan: u64,
    pub inf: u64,
}

impl BlobStats {
    /// True when the blob holds no NaN and no Inf.
    pub fn is_finite(&self) -> bool {
        self.nan == 0 && self.inf == 0
    }
}

/// One layer of a [`LayerTrace`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerRecord {
    /// The layer's name as the model gave it (`conv1`, `layer2.0`).
    pub name: String,
    /// What kind of layer (`Convolution`, `Pooling`, `InnerProduct`, `Data`...).
    pub kind: String,
    /// Shape of the layer's top blob.
    pub output_shape: Vec<usize>,
    pub forward_seconds: f64,
    /// Zero for a layer with no backward (the data layer, or a forward-only trace).
    pub backward_seconds: f64,
    /// Statistics of the top blob's values (with [`TapDetail::Full`]).
    pub data: Option<BlobStats>,
    /// Statistics of the gradient arriving at the top blob (with [`TapDetail::Full`], after a
    /// backward pass).
    pub diff: Option<BlobStats>,
}

/// One trainable parameter of a [`LayerTrace`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParamRecord {
    /// The module path (`conv1.weight`, `layer1.0.bn1.gamma`).
    pub name: String,
    /// The traced layer whose name prefixes the parameter's, when there is one.
    pub layer: Option<String>,
    pub shape: Vec<usize>,
    pub value: Option<BlobStats>,
    pub grad: Option<BlobStats>,
}

/// What one iteration through the tap recorded: every layer in forward order, every parameter.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LayerTrace {
    pub detail: TapDetail,
    pub layers: Vec<LayerRecord>,
    pub params: Vec<ParamRecord>,
    /// Backward time of whatever the model computed after its last traced layer (zero when the
    /// loss itself is a traced layer).
    pub tail_backward_seconds: f64,
}

impl LayerTrace {
    /// Forward plus backward time of every layer, the tail included.
    pub fn total_seconds(&self) -> f64 {
        self.layers
            .iter()
            .map(|l| l.forward_seconds + l.backward_seconds)
            .sum::<f64>()
            + self.tail_backward_seconds
    }

    /// The layer named `name`.
    pub fn layer(&self, name: &str) -> Option<&LayerRecord> {
        self.layers.iter().find(|l| l.name == name)
    }

    /// The parameter named `name`.
    pub fn param(&self, name: &str) -> Option<&ParamRecord> {
        self.params.iter().find(|p| p.name == name)
    }
}

/// On a GPU device, blobs of at most this many values are read back whole (a few kilobytes) and
/// reduced on the host, since the fixed cost of a tensor operation dominates for biases and
/// logits; larger blobs are reduced on the device. (On a CPU device every blob is reduced in
/// place, whatever its size: see [`PendingStats::InPlace`].)
pub const HOST_REDUCED_MAX: usize = 4096;

/// Statistics waiting to be computed or read.
// A few dozen per iteration: not worth boxing the two-tensor variant.
#[allow(clippy::large_enum_variant)]
enum PendingStats {
    /// A blob on a device whose memory is the host's (Burn's CPU backend, flex): its statistics
    /// are computed on that device, which is the CPU, by one fused pass over the tensor's own
    /// buffer (no copy, no read-back, no tensor operation), all of the iteration's blobs in
    /// parallel, when the trace is taken.
    InPlace(Tensor<1>),
    /// A small blob on a GPU device: read back whole in the iteration's single transfer and
    /// reduced on the host.
    Whole(Tensor<1>),
    /// A large blob on a GPU device: `[min, max, sum, sum |x|]` computed on the device, read in
    /// the iteration's single transfer (NaN and Inf counted on the device, in a second read,
    /// only when a sum is not finite).
    Device { blob: Tensor<1>, partial: Tensor<1> },
}

impl PendingStats {
    /// What this blob contributes to the single read (nothing for a blob reduced in place).
    fn part(&self) -> Option<Tensor<1>> {
        match self {
            PendingStats::InPlace(_) => None,
            PendingStats::Whole(blob) => Some(blob.clone()),
            PendingStats::Device { partial, .. } => Some(partial.clone()),
        }
    }

    fn part_len(&self) -> usize {
        match self {
            PendingStats::InPlace(_) => 0,
            PendingStats::Whole(blob) => blob.dims()[0],
            PendingStats::Device { .. } => 4,
        }
    }
}

/// Whether `device`'s memory is the host's, so that a blob's statistics are best computed by
/// reading its buffer in place (flex, Burn's CPU backend) rather than by device reductions.
fn host_memory(device: &Device) -> bool {
    device.clone().inner() == Device::flex()
}

fn pending(blob: Tensor<1>) -> Option<PendingStats> {
    let in_place = host_memory(&blob.device());
    pending_as(blob, in_place)
}

fn pending_as(blob: Tensor<1>, in_place: bool) -> Option<PendingStats> {
    let n = blob.dims()[0];
    if n == 0 {
        return None;
    }
    if in_place {
        return Some(PendingStats::InPlace(blob));
    }
    if n <= HOST_REDUCED_MAX {
        return Some(PendingStats::Whole(blob));
    }
    let partial = Tensor::cat(
        vec![
            blob.clone().min(),
            blob.clone().max(),
            blob.clone().sum(),
            blob.clone().abs().sum(),
        ],
        0,
    );
    Some(PendingStats::Device { blob, partial })
}

/// The values of a CPU-backend blob: its own buffer when it is a contiguous f32 tensor of flex
/// (the common case: no copy), otherwise a converted copy.
enum HostValues {
    Borrowed(burn::backend::flex::FlexTensor),
    Owned(Vec<f32>),
}

impl HostValues {
    fn of(blob: &Tensor<1>) -> HostValues {
        match blob.clone().try_into_primitive::<burn::backend::Flex>() {
            Ok(t) if t.as_slice::<f32>().is_some() => HostValues::Borrowed(t),
            Ok(t) => HostValues::Owned(
                t.into_data()
                    .convert::<f32>()
                    .try_into_vec::<f32>()
                    .unwrap_or_default(),
            ),
            Err(_) => HostValues::Owned(blob.clone().try_into_vec_as::<f32>().unwrap_or_default()),
        }
    }

    fn values(&self) -> &[f32] {
        match self {
            HostValues::Borrowed(t) => t.as_slice::<f32>().unwrap_or_default(),
            HostValues::Owned(v) => v,
        }
    }
}

/// Computes every pending statistic: the blobs on a CPU device in place (one fused parallel pass
/// each), the others with one read for the whole iteration (and NaN and Inf counted on the
/// device where a large blob's sum was not finite).
fn resolve(pending: Vec<Option<PendingStats>>) -> Vec<Option<BlobStats>> {
    let mut out: Vec<Option<BlobStats>> = pending.iter().map(|_| None).collect();

    // In place: every blob's buffer borrowed, reduced in parallel chunks.
    let in_place: Vec<(usize, HostValues)> = pending
        .iter()
        .enumerate()
        .filter_map(|(i, p)| match p {
            Some(PendingStats::InPlace(blob)) => Some((i, HostValues::of(blob))),
            _ => None,
        })
        .collect();
    if !in_place.is_empty() {
        let slices: Vec<&[f32]> = in_place.iter().map(|(_, v)| v.values()).collect();
        let stats = host_reduce::stats_many(&slices);
        for ((i, values), s) in in_place.iter().zip(stats) {
            // A blob that could not be read gives no statistics rather than wrong ones.
            if !values.values().is_empty() {
                out[*i] = Some(s);
            }
        }
    }

    // Read back: one transfer for the rest.
    let read: Vec<(usize, &PendingStats)> = pending
        .iter()
        .enumerate()
        .filter_map(|(i, p)| p.as_ref().filter(|p| p.part_len() > 0).map(|p| (i, p)))
        .collect();
    if read.is_empty() {
        return out;
    }
    let values: Vec<f32> = Tensor::cat(read.iter().filter_map(|(_, p)| p.part()).collect(), 0)
        .try_into_vec_as::<f32>()
        .unwrap_or_default();
    let mut at = 0;
    for (i, p) in read {
        let len = p.part_len();
        let Some(v) = values.get(at..at + len) else {
            at += len;
            continue;
        };
        at += len;
        out[i] = match p {
            PendingStats::InPlace(_) => None,
            PendingStats::Whole(_) => Some(host_reduce::stats(v)),
            PendingStats::Device { blob, .. } => Some(device_stats(blob, v)),
        };
    }
    out
}

/// Statistics of `blobs` (each flattened), computed as the Tap computes them: in place on a CPU
/// device, by device reductions and one read otherwise.
pub fn blob_stats(blobs: &[Tensor<1>]) -> Vec<Option<BlobStats>> {
    resolve(blobs.iter().map(|b| pending(b.clone())).collect())
}

/// [`blob_stats`] through the GPU path (device reductions, one read) whatever the device: for
/// benchmarks comparing the two.
#[doc(hidden)]
pub fn blob_stats_by_device_reductions(blobs: &[Tensor<1>]) -> Vec<Option<BlobStats>> {
    resolve(blobs.iter().map(|b| pending_as(b.clone(), false)).collect())
}

/// A device-reduced blob's statistics from its `[min, max, sum, sum |x|]`.
fn device_stats(blob: &Tensor<1>, v: &[f32]) -> BlobStats {
    let count = blob.dims()[0];
    let (nan, inf) = if v[2].is_finite() && v[3].is_finite() {
        (0, 0)
    } else {
        let counts = Tensor::cat(
            vec![
                blob.clone().is_nan().float().sum(),
                blob.clone().is_inf().float().sum(),
            ],
            0,
        )
        .try_into_vec_as::<f32>()
        .unwrap_or_default();
        (
            counts.first().copied().unwrap_or(0.0) as u64,
            counts.get(1).copied().unwrap_or(0.0) as u64,
        )
    };
    BlobStats {
        count,
        min: v[0],
        max: v[1],
        mean: v[2] / count as f32,
        mean_abs: v[3] / count as f32,
        nan,
        inf,
    }
}

fn flat<const D: usize>(t: Tensor<D>) -> Tensor<1> {
    let n = t.shape().num_elements();
    t.reshape([n])
}

/// Removes, from one backward pass's gradients, the gradient that reached a layer's output leaf.
type LeafGrad = Box<dyn Fn(&mut Gradients) -> Option<Tensor<1>>>;

/// One traced layer while the iteration is in flight.
struct Segment {
    name: String,
    /// Module paths whose parameters belong to this layer.
    owns: Vec<String>,
    kind: String,
    output_shape: Vec<usize>,
    /// The output, flattened, still attached to this layer's graph (None without autodiff).
    output: Option<Tensor<1>>,
    /// Removes the gradient that reached this layer's output leaf from a backward pass.
    leaf_grad: Option<LeafGrad>,
    forward_seconds: f64,
    backward_seconds: f64,
    data: Option<PendingStats>,
    diff: Option<Tensor<1>>,
    /// The loss: not cut; its backward is the first backward pass.
    head: bool,
}

/// Per-layer instrumentation; see the module documentation.
pub struct Tap {
    detail: TapDetail,
    segments: Vec<Segment>,
    device: Option<Device>,
    /// The diff the top sends into the loss layer (its loss weight).
    head_diff: f32,
    /// A planted slow layer: extra seconds its forward spends (the profiler's `slow-layer` fault).
    delay: Option<(String, f64)>,
}

impl std::fmt::Debug for Tap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tap")
            .field("detail", &self.detail)
            .field("layers", &self.segments.len())
            .finish()
    }
}

impl Default for Tap {
    fn default() -> Self {
        Tap::off()
    }
}

impl Tap {
    /// A tap that records `detail`.
    pub fn new(detail: TapDetail) -> Self {
        Tap {
            detail,
            segments: Vec::new(),
            device: None,
            head_diff: 1.0,
            delay: None,
        }
    }

    /// A tap that records nothing: the model's plain forward.
    pub fn off() -> Self {
        Tap::new(TapDetail::Off)
    }

    /// Plants a slow layer: `layer`'s forward spends `seconds` more (inside its timed window), so
    /// a user can see how the profiler names a bottleneck. Only with the tap on.
    pub fn with_delay(mut self, layer: &str, seconds: f64) -> Self {
        self.delay = Some((layer.to_string(), seconds.max(0.0)));
        self
    }

    pub fn detail(&self) -> TapDetail {
        self.detail
    }

    pub fn is_on(&self) -> bool {
        self.detail != TapDetail::Off
    }

    fn sync(&self) {
        if let Some(device) = &self.device {
            let _ = device.sync();
        }
    }

    /// Runs `f(x)` between two device synchronisations and returns its output and seconds; a
    /// planted delay for `name` is spent inside the window.
    fn timed_forward<const I: usize, T>(
        &mut self,
        name: &str,
        x: Tensor<I>,
        f: impl FnOnce(Tensor<I>) -> T,
    ) -> (T, f64) {
        let device = self.device.get_or_insert_with(|| x.device()).clone();
        let _ = device.sync();
        let started = Instant::now();
        let out = f(x);
        if let Some((layer, seconds)) = &self.delay
            && layer == name
        {
            std::thread::sleep(std::time::Duration::from_secs_f64(*seconds));
        }
        let _ = device.sync();
        (out, started.elapsed().as_secs_f64())
    }

    /// Records the data layer: the seconds spent assembling the batch `images`, and (with full
    /// detail) the statistics of the images as the network sees them.
    pub fn data_layer<const D: usize>(&mut self, name: &str, images: &Tensor<D>, seconds: f64) {
        if !self.is_on() {
            return;
        }
        self.device.get_or_insert_with(|| images.device());
        let data = (self.detail == TapDetail::Full)
            .then(|| pending(flat(images.clone().inner())))
            .flatten();
        self.segments.push(Segment {
            name: name.to_string(),
            owns: Vec::new(),
            kind: "Data".into(),
            output_shape: images.dims().to_vec(),
            output: None,
            leaf_grad: None,
            forward_seconds: seconds,
            backward_seconds: 0.0,
            data,
            diff: None,
            head: false,
        });
    }

    /// Runs one layer: `f(x)`. With the tap on, the forward is timed (device synchronised), the
    /// output recorded, and (on an autodiff device) the graph cut after it so that its backward
    /// time and diff can be measured.
    pub fn layer<const I: usize, const O: usize>(
        &mut self,
        name: &str,
        kind: &str,
        x: Tensor<I>,
        f: impl FnOnce(Tensor<I>) -> Tensor<O>,
    ) -> Tensor<O> {
        self.layer_owning(name, kind, &[name], x, f)
    }

    /// [`Tap::layer`] for a layer whose parameters live under other module paths than its name
    /// (a convolution and its batch norm traced as one layer: `&["conv1", "bn1"]`).
    pub fn layer_owning<const I: usize, const O: usize>(
        &mut self,
        name: &str,
        kind: &str,
        owns: &[&str],
        x: Tensor<I>,
        f: impl FnOnce(Tensor<I>) -> Tensor<O>,
    ) -> Tensor<O> {
        if !self.is_on() {
            return f(x);
        }
        let (out, forward_seconds) = self.timed_forward(name, x, f);

        let output_shape = out.dims().to_vec();
        let data = (self.detail == TapDetail::Full)
            .then(|| pending(flat(out.clone().inner())))
            .flatten();
        let (next, output, leaf_grad) = if out.is_tracked() {
            let leaf = out.clone().detach().require_grad();
            let handle = leaf.clone();
            let grab: LeafGrad = Box::new(move |grads| handle.grad_remove(grads).map(flat));
            (leaf, Some(flat(out)), Some(grab))
        } else {
            (out, None, None)
        };
        self.segments.push(Segment {
            name: name.to_string(),
            owns: owns.iter().map(|o| o.to_string()).collect(),
            kind: kind.to_string(),
            output_shape,
            output,
            leaf_grad,
            forward_seconds,
            backward_seconds: 0.0,
            data,
            diff: None,
            head: false,
        });
        next
    }

    /// Runs the loss layer: `f(x)`, timed like any layer but not cut, since nothing follows it;
    /// its backward time is the first backward pass of [`Tap::backward`]. Pass what it returns
    /// to `backward` (or to [`Tap::backward_weighted`] with a loss weight).
    pub fn loss<const I: usize>(
        &mut self,
        name: &str,
        kind: &str,
        x: Tensor<I>,
        f: impl FnOnce(Tensor<I>) -> Tensor<1>,
    ) -> Tensor<1> {
        if !self.is_on() {
            return f(x);
        }
        let (out, forward_seconds) = self.timed_forward(name, x, f);
        let data = (self.detail == TapDetail::Full)
            .then(|| pending(out.clone().inner()))
            .flatten();
        self.segments.push(Segment {
            name: name.to_string(),
            owns: vec![name.to_string()],
            kind: kind.to_string(),
            output_shape: out.dims().to_vec(),
            output: None,
            leaf_grad: None,
            forward_seconds,
            backward_seconds: 0.0,
            data,
            diff: None,
            head: true,
        });
        out
    }

    /// [`Tap::backward`] from `loss * weight`: Caffe's `loss_weight`, the diff the loss layer
    /// sends down (recorded as the loss layer's diff when `loss` came from [`Tap::loss`]).
    pub fn backward_weighted<M: Module>(
        &mut self,
        loss: Tensor<1>,
        weight: f32,
        model: &M,
    ) -> (GradientsParams, Option<LayerTrace>) {
        let top = if weight == 1.0 {
            loss
        } else {
            loss.mul_scalar(weight)
        };
        self.head_diff = weight;
        let result = self.backward(top, model);
        self.head_diff = 1.0;
        result
    }

    /// Collects, from one backward pass's gradients, the diff that reached each earlier layer's
    /// output (summed when a layer feeds several later ones) and the parameter gradients.
    fn harvest<M: Module>(
        &mut self,
        mut grads: Gradients,
        before: usize,
        model: &M,
        acc: &mut GradientsAccumulator<M>,
    ) {
        for segment in self.segments[..before].iter_mut() {
            if let Some(grab) = &segment.leaf_grad
                && let Some(g) = grab(&mut grads)
            {
                segment.diff = Some(match segment.diff.take() {
                    Some(d) => d + g,
                    None => g,
                });
            }
        }
        acc.accumulate(model, GradientsParams::from_grads(grads, model));
    }

    /// Runs the backward pass from `top` (a loss, already scaled by its loss weight) and returns
    /// the parameter gradients and, when the tap is on, the iteration's trace. The tap is empty
    /// again afterwards, ready for the next iteration.
    pub fn backward<M: Module>(
        &mut self,
        top: Tensor<1>,
        model: &M,
    ) -> (GradientsParams, Option<LayerTrace>) {
        if !self.is_on() {
            return (GradientsParams::from_grads(top.backward(), model), None);
        }
        let mut acc = GradientsAccumulator::<M>::new();
        let n = self.segments.len();

        self.sync();
        let started = Instant::now();
        let grads = top.sum().backward();
        self.harvest(grads, n, model, &mut acc);
        self.sync();
        let mut tail_backward_seconds = started.elapsed().as_secs_f64();
        if let Some(head) = self.segments.last_mut().filter(|s| s.head) {
            head.backward_seconds = tail_backward_seconds;
            tail_backward_seconds = 0.0;
        }

        for i in (0..n).rev() {
            let diff = if self.detail == TapDetail::Full {
                self.segments[i].diff.clone()
            } else {
                self.segments[i].diff.take()
            };
            let (Some(output), Some(diff)) = (self.segments[i].output.take(), diff) else {
                continue;
            };
            let started = Instant::now();
            // The vector-Jacobian product seeded with the diff that reached this layer's output:
            // d/d(params) of sum(output * diff). (A [1, n] x [n, 1] matmul instead measured 10x
            // slower on flex.)
            let grads = (output * diff).sum().backward();
            self.harvest(grads, i, model, &mut acc);
            self.sync();
            self.segments[i].backward_seconds = started.elapsed().as_secs_f64();
        }
        let grads = acc.grads();
        let trace = self.take_trace(model, Some(&grads), tail_backward_seconds);
        (grads, Some(trace))
    }

    /// The trace of a forward-only pass (no backward was run), with `model`'s parameters.
    /// The tap is empty again afterwards.
    pub fn forward_trace<M: Module>(&mut self, model: &M) -> LayerTrace {
        self.take_trace(model, None, 0.0)
    }

    fn take_trace<M: Module>(
        &mut self,
        model: &M,
        grads: Option<&GradientsParams>,
        tail: f64,
    ) -> LayerTrace {
        let segments = std::mem::take(&mut self.segments);
        let full = self.detail == TapDetail::Full;

        let mut visitor = ParamVisitor {
            stack: Vec::new(),
            containers: Vec::new(),
            grads,
            full,
            params: Vec::new(),
            stats: Vec::new(),
        };
        model.visit(&mut visitor);
        let ParamVisitor {
            params: mut param_records,
            stats: param_stats,
            ..
        } = visitor;

        // One read for every statistic of the iteration.
        let mut all: Vec<Option<PendingStats>> = Vec::new();
        let mut layers = Vec::with_capacity(segments.len());
        let mut owners: Vec<(String, String)> = Vec::new();
        let mut head_diffs = Vec::new();
        for s in segments {
            owners.extend(s.owns.iter().map(|o| (o.clone(), s.name.clone())));
            all.push(s.data);
            all.push(if full { s.diff.and_then(pending) } else { None });
            let count: usize = s.output_shape.iter().product();
            let w = self.head_diff;
            head_diffs.push((s.head && full && grads.is_some()).then(|| BlobStats {
                count,
                min: w,
                max: w,
                mean: w,
                mean_abs: w.abs(),
                nan: if w.is_nan() { count as u64 } else { 0 },
                inf: if w.is_infinite() { count as u64 } else { 0 },
            }));
            layers.push(LayerRecord {
                name: s.name,
                kind: s.kind,
                output_shape: s.output_shape,
                forward_seconds: s.forward_seconds,
                backward_seconds: s.backward_seconds,
                data: None,
                diff: None,
            });
        }
        all.extend(param_stats);
        let mut resolved = resolve(all).into_iter();
        for (layer, head_diff) in layers.iter_mut().zip(head_diffs) {
            layer.data = resolved.next().flatten();
            layer.diff = resolved.next().flatten().or(head_diff);
        }
        for p in &mut param_records {
            p.value = resolved.next().flatten();
            p.grad = resolved.next().flatten();
            p.layer = owners
                .iter()
                .filter(|(prefix, _)| {
                    p.name.starts_with(prefix.as_str()) && p.name[prefix.len()..].starts_with('.')
                })
                .max_by_key(|(prefix, _)| prefix.len())
                .map(|(_, layer)| layer.clone());
        }
        LayerTrace {
            detail: self.detail,
            layers,
            params: param_records,
            tail_backward_seconds: tail,
        }
    }
}

/// Names every trainable parameter by its module path and queues its statistics.
struct ParamVisitor<'a> {
    stack: Vec<String>,
    /// The container type of each entry of `stack` (`Struct:BatchNorm`).
    containers: Vec<String>,
    grads: Option<&'a GradientsParams>,
    full: bool,
    params: Vec<ParamRecord>,
    /// Two per parameter: value, gradient.
    stats: Vec<Option<PendingStats>>,
}

impl ModuleVisitor for ParamVisitor<'_> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.stack.push(name.to_string());
        self.containers.push(container_type.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.stack.pop();
        self.containers.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        // On an autodiff device a parameter says whether it trains; on a plain device none
        // requires a gradient, and the non-trainable float state Burn's modules hold is batch
        // norm's running statistics.
        let trainable = if param.lazy_device().is_autodiff() {
            param.is_require_grad()
        } else {
            let field = self.stack.last().map(String::as_str).unwrap_or("");
            let running_stat = field.starts_with("running_")
                && self
                    .containers
                    .last()
                    .is_some_and(|c| c.ends_with(":BatchNorm"));
            !running_stat
        };
        if !trainable {
            return;
        }
        self.params.push(ParamRecord {
            name: self.stack.join("."),
            layer: None,
            shape: param.lazy_shape().to_vec(),
            value: None,
            grad: None,
        });
        if self.full {
            self.stats.push(pending(flat(param.val().inner())));
            self.stats.push(
                self.grads
                    .and_then(|g| g.get::<D>(param.id))
                    .and_then(|g| pending(flat(g))),
            );
        } else {
            self.stats.push(None);
            self.stats.push(None);
        }
    }
}

/// The trainable parameters of `model`: module path and shape, in visiting order.
pub fn param_shapes<M: Module>(model: &M) -> Vec<(String, Vec<usize>)> {
    let mut visitor = ParamVisitor {
        stack: Vec::new(),
        containers: Vec::new(),
        grads: None,
        full: false,
        params: Vec::new(),
        stats: Vec::new(),
    };
    model.visit(&mut visitor);
    visitor
        .params
        .into_iter()
        .map(|p| (p.name, p.shape))
        .collect()
}

/// The number of trainable values in `model` (batch norm's running statistics excluded, unlike
/// Burn's `num_params`).
pub fn trainable_param_count<M: Module>(model: &M) -> usize {
    param_shapes(model)
        .iter()
        .map(|(_, shape)| shape.iter().product::<usize>())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn value() -> impl Strategy<Value = f32> {
        prop_oneof![
            20 => -1e3f32..1e3,
            1 => Just(f32::NAN),
            1 => Just(f32::INFINITY),
            1 => Just(f32::NEG_INFINITY),
        ]
    }

    /// The statistics of `values` checked against a plain Rust loop.
    fn check(values: &[f32], stats: BlobStats) -> Result<(), TestCaseError> {
        let nan = values.iter().filter(|v| v.is_nan()).count() as u64;
        let inf = values.iter().filter(|v| v.is_infinite()).count() as u64;
        prop_assert_eq!(
            (stats.count, stats.nan, stats.inf),
            (values.len(), nan, inf)
        );
        if nan == 0 && inf == 0 {
            let min = values.iter().cloned().fold(f32::INFINITY, f32::min);
            let max = values.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            let mean = values.iter().map(|&v| v as f64).sum::<f64>() / values.len() as f64;
            let mean_abs =
                values.iter().map(|&v| v.abs() as f64).sum::<f64>() / values.len() as f64;
            prop_assert_eq!((stats.min, stats.max), (min, max));
            prop_assert!(
                (stats.mean as f64 - mean).abs() <= 1e-3 * mean_abs.max(1.0),
                "{} {}",
                stats.mean,
                mean
            );
            prop_assert!((stats.mean_abs as f64 - mean_abs).abs() <= 1e-4 * mean_abs.max(1.0));
        } else {
            prop_assert!(!stats.is_finite());
        }
        Ok(())
    }

    fn blob(values: &[f32]) -> Tensor<1> {
        Tensor::<1>::from_data(
            TensorData::new(values.to_vec(), [values.len()]),
            &Device::flex(),
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// Host-reduced and device-reduced blobs give the same statistics as a plain loop.
        #[test]
        fn statistics_match_a_plain_loop(values in proptest::collection::vec(value(), 1..9000)) {
            let device = Device::flex();
            let blob = Tensor::<1>::from_data(TensorData::new(values.clone(), [values.len()]), &device);
            let stats = resolve(vec![pending(blob)]).pop().flatten().unwrap();
            let nan = values.iter().filter(|v| v.is_nan()).count() as u64;
            let inf = values.iter().filter(|v| v.is_infinite()).count() as u64;
            prop_assert_eq!((stats.count, stats.nan, stats.inf), (values.len(), nan, inf));
            if nan == 0 && inf == 0 {
                let min = values.iter().cloned().fold(f32::INFINITY, f32::min);
                let max = values.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                let mean = values.iter().map(|&v| v as f64).sum::<f64>() / values.len() as f64;
                let mean_abs = values.iter().map(|&v| v.abs() as f64).sum::<f64>() / values.len() as f64;
                prop_assert_eq!((stats.min, stats.max), (min, max));
                prop_assert!((stats.mean as f64 - mean).abs() <= 1e-3 * mean_abs.max(1.0), "{} {}", stats.mean, mean);
                prop_assert!((stats.mean_abs as f64 - mean_abs).abs() <= 1e-4 * mean_abs.max(1.0));
            } else {
                prop_assert!(!stats.is_finite());
            }
        }

        /// The GPU paths (a small blob read back whole, a large one reduced by tensor operations),
        /// forced on flex, agree with the plain loop too.
        #[test]
        fn device_reductions_match_a_plain_loop(values in proptest::collection::vec(value(), 1..9000)) {
            let stats = resolve(vec![pending_as(blob(&values), false)]).pop().flatten().unwrap();
            check(&values, stats)?;
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

        /// The fused pass over blobs of several parallel chunks (LeNet's conv1 holds 737,280
        /// values), several blobs at once, matches the plain loop, and its NaN/Inf-aware exact
        /// recount gives the same numbers as the fast pass where both apply.
        #[test]
        fn fused_pass_over_many_chunks_matches_a_plain_loop(
            big in proptest::collection::vec(-1e3f32..1e3, 1..300_000),
            small in proptest::collection::vec(value(), 1..100),
            poison in proptest::option::of((any::<proptest::sample::Index>(), value())),
        ) {
            let mut big = big;
            if let Some((at, v)) = poison {
                let i = at.index(big.len());
                big[i] = v;
            }
            let stats = resolve(vec![pending(blob(&big)), None, pending(blob(&small))]);
            prop_assert!(stats[1].is_none());
            check(&big, stats[0].unwrap())?;
            check(&small, stats[2].unwrap())?;
            let exact = host_reduce::exact(&big);
            let fused = stats[0].unwrap();
            prop_assert_eq!((fused.nan, fused.inf), (exact.nan, exact.inf));
            prop_assert!(fused.min == exact.min || (fused.min.is_nan() && exact.min.is_nan()));
            prop_assert!(fused.max == exact.max || (fused.max.is_nan() && exact.max.is_nan()));
        }
    }

    /// A blob that is a strided view of a larger buffer (not contiguous) is reduced from a copy.
    #[test]
    fn a_strided_blob_gives_the_same_statistics() {
        let values: Vec<f32> = (0..6000).map(|i| ((i * 37) % 101) as f32 - 50.0).collect();
        let matrix = Tensor::<2>::from_data(TensorData::new(values, [60, 100]), &Device::flex());
        let transposed = matrix.clone().transpose();
        let host: Vec<f32> = transposed.clone().try_into_vec_as::<f32>().unwrap();
        let stats = resolve(vec![pending(flat(transposed))])
            .pop()
            .flatten()
            .unwrap();
        assert_eq!(stats, host_reduce::exact(&host));
    }
}
