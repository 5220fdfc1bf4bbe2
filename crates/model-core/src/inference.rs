//! Batched inference on the CPU, for the steps that run a trained model many times without a
//! backward: occlusion maps (thousands of perturbed copies of one image), accuracy over a test
//! set.
//!
//! Burn's CPU backend runs each convolution image by image, converts layouts on every call and
//! gives batch norm, ReLU and the residual add a pass over memory each. An [`InferenceNet`] is a
//! classifier lowered once into a flat list of host operations with everything an inference-only
//! run can fold, folded:
//!
//! - activations stay channels-last (`[batch, height, width, channels]`) from the first layer to
//!   the last, so a convolution is one im2col plus one matrix product over the whole batch;
//! - batch norm (running statistics) is folded into the convolution's weights and bias;
//! - bias, the residual shortcut and ReLU are applied to each output tile while it is in cache;
//! - the output rows of every layer are split into tiles that the threads share (rayon), so one
//!   image and a batch of 200 both keep both cores busy.
//!
//! A model describes itself with [`InferenceNetBuilder`] ([`Classifier::inference_net`]); the
//! lowering refuses what it does not implement (dilated convolutions, `Same` padding, padded or
//! ceil-mode pooling) with [`LowerError`], and the caller keeps Burn's forward. The logits equal
//! Burn's forward up to float rounding (the tests hold every bundled model to it).
//!
//! [`Classifier::inference_net`]: crate::models::Classifier::inference_net

use std::sync::{Arc, Mutex};

use burn::nn::conv::Conv2d;
use burn::nn::pool::MaxPool2d;
use burn::nn::{BatchNorm, Linear, PaddingConfig2d};
use burn::prelude::*;
use rayon::prelude::*;

use crate::dataset::SampleShape;
use crate::models::Classifier;

mod near;
pub use near::{NearWork, Reference};

/// Why a model could not be lowered into an [`InferenceNet`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LowerError {
    #[error("layer {layer}: {what} is not supported by the CPU inference path")]
    Unsupported { layer: String, what: String },
    #[error("layer {layer}: expected {expected}, found {found}")]
    Shape {
        layer: String,
        expected: String,
        found: String,
    },
    #[error("layer {layer}: reading its parameters: {what}")]
    Read { layer: String, what: String },
}

/// The shape of an activation between operations: channels-last, per sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Dims {
    h: usize,
    w: usize,
    c: usize,
}

impl Dims {
    fn len(&self) -> usize {
        self.h * self.w * self.c
    }
}

/// What a convolution adds to its output before the ReLU: the block's input, as is or (option A
/// of He et al.) subsampled by `stride` and zero-padded with `pad` channels on each side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shortcut {
    Identity,
    SubsamplePad { stride: usize, pad: usize },
}

#[derive(Debug, Clone)]
struct ConvOp {
    input: Dims,
    output: Dims,
    kernel: [usize; 2],
    stride: [usize; 2],
    /// Top and left padding (bottom and right follow from the output size).
    pad: [usize; 2],
    /// Channel groups: group `g` reads input channels `g * cin / groups ..` and writes output
    /// channels `g * cout / groups ..`.
    groups: usize,
    /// Per group, `[kh * kw * cin_g, cout_g]`, rows ordered (ky, kx, ci) to match a
    /// channels-last im2col row; the groups one after another.
    weight: Vec<f32>,
    bias: Vec<f32>,
    relu: bool,
    shortcut: Option<(Shortcut, Dims)>,
}

impl ConvOp {
    /// Values in one im2col row (one group's patch).
    fn patch_len(&self) -> usize {
        self.kernel[0] * self.kernel[1] * self.input.c / self.groups
    }
}

#[derive(Debug, Clone)]
struct PoolOp {
    input: Dims,
    output: Dims,
    kernel: [usize; 2],
    stride: [usize; 2],
}

#[derive(Debug, Clone)]
struct LinearOp {
    din: usize,
    dout: usize,
    /// `[din, dout]`, rows in the order of the channels-last flattening.
    weight: Vec<f32>,
    bias: Vec<f32>,
    relu: bool,
}

#[derive(Debug, Clone)]
enum Op {
    /// Keep the current activation as the shortcut of the next residual convolution.
    Save,
    Conv(ConvOp),
    MaxPool(PoolOp),
    /// Mean over height and width: `[b, h, w, c]` to `[b, c]`.
    GlobalAvgPool {
        input: Dims,
    },
    Linear(LinearOp),
}

/// A classifier lowered for batched CPU inference; see the module documentation.
#[derive(Debug)]
pub struct InferenceNet {
    input: SampleShape,
    classes: usize,
    ops: Vec<Op>,
    /// Freed activation buffers, reused by the next forward (no page faults per call).
    pool: Mutex<Vec<Vec<f32>>>,
}

/// Describes a model, layer by layer, as an [`InferenceNet`]; each method reads the layer's
/// parameters and checks that its input shape follows from the previous layer.
#[derive(Debug)]
pub struct InferenceNetBuilder {
    input: SampleShape,
    current: Dims,
    flat: Option<usize>,
    ops: Vec<Op>,
    saved: Option<Dims>,
}

fn read(layer: &str, t: Tensor<1>) -> Result<Vec<f32>, LowerError> {
    t.try_into_vec_as::<f32>().map_err(|e| LowerError::Read {
        layer: layer.to_string(),
        what: format!("{e:?}"),
    })
}

fn unsupported(layer: &str, what: impl Into<String>) -> LowerError {
    LowerError::Unsupported {
        layer: layer.to_string(),
        what: what.into(),
    }
}

fn out_size(input: usize, kernel: usize, stride: usize, pad_total: usize) -> Option<usize> {
    (input + pad_total)
        .checked_sub(kernel)
        .map(|span| span / stride + 1)
}

impl InferenceNetBuilder {
    /// Starts from images of `input` shape.
    pub fn new(input: SampleShape) -> Self {
        InferenceNetBuilder {
            input,
            current: Dims {
                h: input.height,
                w: input.width,
                c: input.channels,
            },
            flat: None,
            ops: Vec::new(),
            saved: None,
        }
    }

    /// The current activation, which must still be image-shaped (no layer may follow `save`
    /// but a convolution; see [`Self::not_after_save`]).
    fn spatial(&self, layer: &str) -> Result<Dims, LowerError> {
        self.not_after_save(layer)?;
        self.image_input(layer)
    }

    /// The current activation, which must still be image-shaped.
    fn image_input(&self, layer: &str) -> Result<Dims, LowerError> {
        match self.flat {
            None => Ok(self.current),
            Some(n) => Err(LowerError::Shape {
                layer: layer.to_string(),
                expected: "an image-shaped input".into(),
                found: format!("a flat vector of {n}"),
            }),
        }
    }

    /// `save` hands the activation to the next convolution; nothing else may come between.
    fn not_after_save(&self, layer: &str) -> Result<(), LowerError> {
        match self.ops.last() {
            Some(Op::Save) => Err(unsupported(
                layer,
                "anything but a convolution after `save`",
            )),
            _ => Ok(()),
        }
    }

    /// Keeps the current activation as the shortcut of the next [`Self::conv_residual`].
    pub fn save(mut self) -> Self {
        self.ops.push(Op::Save);
        self.saved = Some(self.current);
        self
    }

    /// A convolution, then (when given) batch norm with its running statistics, then (when
    /// `relu`) a ReLU.
    pub fn conv(
        self,
        layer: &str,
        conv: &Conv2d,
        bn: Option<&BatchNorm>,
        relu: bool,
    ) -> Result<Self, LowerError> {
        self.conv_with(layer, conv, bn, None, relu)
    }

    /// A convolution and batch norm whose output gets the saved activation added (through
    /// `shortcut`) before the ReLU: the second half of a residual block.
    pub fn conv_residual(
        self,
        layer: &str,
        conv: &Conv2d,
        bn: Option<&BatchNorm>,
        shortcut: Shortcut,
        relu: bool,
    ) -> Result<Self, LowerError> {
        self.conv_with(layer, conv, bn, Some(shortcut), relu)
    }

    fn conv_with(
        mut self,
        layer: &str,
        conv: &Conv2d,
        bn: Option<&BatchNorm>,
        shortcut: Option<Shortcut>,
        relu: bool,
    ) -> Result<Self, LowerError> {
        // A convolution is the one layer that may follow `save`.
        let input = self.image_input(layer)?;
        if conv.dilation != [1, 1] {
            return Err(unsupported(layer, format!("dilation {:?}", conv.dilation)));
        }
        let (top, left, bottom, right) = match conv.padding {
            PaddingConfig2d::Valid => (0, 0, 0, 0),
            PaddingConfig2d::Explicit(t, l, b, r) => (t, l, b, r),
            PaddingConfig2d::Same => return Err(unsupported(layer, "`Same` padding")),
        };
        let [cout, cin_g, kh, kw] = conv.weight.val().dims();
        let groups = conv.groups.max(1);
        if cin_g * groups != input.c || cout % groups != 0 {
            return Err(LowerError::Shape {
                layer: layer.to_string(),
                expected: format!(
                    "{} input channels and output channels divisible into {groups} groups",
                    cin_g * groups
                ),
                found: format!("{} input channels, {cout} output channels", input.c),
            });
        }
        let cout_g = cout / groups;
        let [sh, sw] = conv.stride;
        let (Some(oh), Some(ow)) = (
            out_size(input.h, kh, sh, top + bottom),
            out_size(input.w, kw, sw, left + right),
        ) else {
            return Err(LowerError::Shape {
                layer: layer.to_string(),
                expected: format!("an input of at least {kh}x{kw} with padding"),
                found: format!("{}x{}", input.h, input.w),
            });
        };
        let raw = read(layer, conv.weight.val().flatten::<1>(0, 3))?;
        let mut bias = match &conv.bias {
            Some(b) => read(layer, b.val())?,
            None => vec![0.0; cout],
        };
        // Batch norm folded: y = scale * (conv + bias - mean) + beta.
        let mut scale = vec![1.0f32; cout];
        if let Some(bn) = bn {
            let gamma = read(layer, bn.gamma.val())?;
            let beta = read(layer, bn.beta.val())?;
            let mean = read(layer, bn.running_mean.value())?;
            let var = read(layer, bn.running_var.value())?;
            if gamma.len() != cout {
                return Err(LowerError::Shape {
                    layer: layer.to_string(),
                    expected: format!("batch norm over {cout} channels"),
                    found: format!("{}", gamma.len()),
                });
            }
            for c in 0..cout {
                let s = gamma[c] as f64 / (var[c] as f64 + bn.epsilon).sqrt();
                scale[c] = s as f32;
                bias[c] = ((bias[c] as f64 - mean[c] as f64) * s + beta[c] as f64) as f32;
            }
        }
        let k_g = kh * kw * cin_g;
        let mut weight = vec![0.0f32; k_g * cout];
        for co in 0..cout {
            let (g, col) = (co / cout_g, co % cout_g);
            let block = &mut weight[g * k_g * cout_g..(g + 1) * k_g * cout_g];
            for ci in 0..cin_g {
                for ky in 0..kh {
                    for kx in 0..kw {
                        let src = ((co * cin_g + ci) * kh + ky) * kw + kx;
                        let row = (ky * kw + kx) * cin_g + ci;
                        block[row * cout_g + col] = raw[src] * scale[co];
                    }
                }
            }
        }
        let output = Dims {
            h: oh,
            w: ow,
            c: cout,
        };
        let shortcut = match shortcut {
            None => None,
            Some(s) => {
                let saved = self.saved.take().ok_or_else(|| LowerError::Shape {
                    layer: layer.to_string(),
                    expected: "a saved activation for the shortcut".into(),
                    found: "none".into(),
                })?;
                let fits = match s {
                    Shortcut::Identity => saved == output,
                    Shortcut::SubsamplePad { stride, pad } => {
                        stride > 0
                            && saved.h.div_ceil(stride) == oh
                            && saved.w.div_ceil(stride) == ow
                            && saved.c + 2 * pad == cout
                    }
                };
                if !fits {
                    return Err(LowerError::Shape {
                        layer: layer.to_string(),
                        expected: format!("a shortcut giving {oh}x{ow}x{cout}"),
                        found: format!("{s:?} of {}x{}x{}", saved.h, saved.w, saved.c),
                    });
                }
                Some((s, saved))
            }
        };
        self.ops.push(Op::Conv(ConvOp {
            input,
            output,
            kernel: [kh, kw],
            stride: [sh, sw],
            pad: [top, left],
            groups,
            weight,
            bias,
            relu,
            shortcut,
        }));
        self.current = output;
        Ok(self)
    }

    /// Max pooling (no padding, no dilation, floor mode).
    pub fn max_pool(mut self, layer: &str, pool: &MaxPool2d) -> Result<Self, LowerError> {
        let input = self.spatial(layer)?;
        if pool.dilation != [1, 1] || pool.ceil_mode {
            return Err(unsupported(layer, "dilated or ceil-mode pooling"));
        }
        if !matches!(pool.padding, PaddingConfig2d::Valid)
            && !matches!(pool.padding, PaddingConfig2d::Explicit(0, 0, 0, 0))
        {
            return Err(unsupported(layer, "padded pooling"));
        }
        let [kh, kw] = pool.kernel_size;
        let [sh, sw] = pool.stride;
        let (Some(oh), Some(ow)) = (out_size(input.h, kh, sh, 0), out_size(input.w, kw, sw, 0))
        else {
            return Err(LowerError::Shape {
                layer: layer.to_string(),
                expected: format!("an input of at least {kh}x{kw}"),
                found: format!("{}x{}", input.h, input.w),
            });
        };
        let output = Dims {
            h: oh,
            w: ow,
            c: input.c,
        };
        self.ops.push(Op::MaxPool(PoolOp {
            input,
            output,
            kernel: [kh, kw],
            stride: [sh, sw],
        }));
        self.current = output;
        Ok(self)
    }

    /// The mean over height and width, flattened to `[batch, channels]`.
    pub fn global_avg_pool(mut self, layer: &str) -> Result<Self, LowerError> {
        let input = self.spatial(layer)?;
        self.ops.push(Op::GlobalAvgPool { input });
        self.flat = Some(input.c);
        Ok(self)
    }

    /// A fully connected layer (then a ReLU when `relu`). An image-shaped input is flattened in
    /// Burn's order (channels, height, width), as `flatten(1, 3)` does.
    pub fn linear(mut self, layer: &str, linear: &Linear, relu: bool) -> Result<Self, LowerError> {
        self.not_after_save(layer)?;
        let [din, dout] = linear.weight.val().dims();
        let have = self.flat.unwrap_or(self.current.len());
        if have != din {
            return Err(LowerError::Shape {
                layer: layer.to_string(),
                expected: format!("{din} inputs"),
                found: format!("{have}"),
            });
        }
        let raw = read(layer, linear.weight.val().flatten::<1>(0, 1))?;
        let weight = match self.flat {
            Some(_) => raw,
            None => {
                // Burn flattens (c, h, w); the activation here is (h, w, c).
                let Dims { h, w, c } = self.current;
                let mut permuted = vec![0.0f32; raw.len()];
                for ci in 0..c {
                    for y in 0..h {
                        for x in 0..w {
                            let src = (ci * h + y) * w + x;
                            let dst = (y * w + x) * c + ci;
                            permuted[dst * dout..(dst + 1) * dout]
                                .copy_from_slice(&raw[src * dout..(src + 1) * dout]);
                        }
                    }
                }
                permuted
            }
        };
        let bias = match &linear.bias {
            Some(b) => read(layer, b.val())?,
            None => vec![0.0; dout],
        };
        self.ops.push(Op::Linear(LinearOp {
            din,
            dout,
            weight,
            bias,
            relu,
        }));
        self.flat = Some(dout);
        Ok(self)
    }

    /// The lowered net; its output must be flat (a linear layer or a global pool last).
    pub fn build(self) -> Result<InferenceNet, LowerError> {
        let Some(classes) = self.flat else {
            return Err(LowerError::Shape {
                layer: "output".into(),
                expected: "logits (a flat output)".into(),
                found: format!(
                    "an image-shaped {}x{}x{}",
                    self.current.h, self.current.w, self.current.c
                ),
            });
        };
        Ok(InferenceNet {
            input: self.input,
            classes,
            ops: self.ops,
            pool: Mutex::new(Vec::new()),
        })
    }
}

/// Values in the largest activation of one chunk of images (256 KiB), when the threads take
/// chunks of a batch through the whole network: input and output of a layer stay in L2.
const CHUNK_VALUES: usize = 65_536;

/// Values in one im2col tile (256 KiB): the tile and its output stay in L2, and each matrix
/// product is large enough to pay for packing the weights.
const TILE_VALUES: usize = 65_536;

/// Whether tensors on `device` live in host memory (Burn's CPU backend without autodiff): there
/// an [`InferenceNet`] reads and writes them without a transfer.
pub fn runs_on_host(device: &Device) -> bool {
    Tensor::<1>::zeros([1], device)
        .try_into_primitive::<burn::backend::Flex>()
        .is_ok()
}

/// A classifier's forward for inference: through its [`InferenceNet`] when the device is the CPU
/// and the model lowers, else Burn's own forward. One place decides, for every caller that runs a
/// trained model many times (occlusion, evaluation).
pub struct InferenceForward<'m, M: Classifier> {
    model: &'m M,
    /// The lowered net, or why Burn's forward runs instead.
    net: Result<InferenceNet, String>,
    /// The last reference image of [`Self::forward_near`] and its activations.
    reference: Mutex<Option<Arc<Reference>>>,
}

impl<'m, M: Classifier> InferenceForward<'m, M> {
    /// Lowered where it can be: `device` is the CPU and `model` describes itself.
    pub fn new(model: &'m M, device: &Device) -> Self {
        let net = if runs_on_host(device) {
            model.inference_net().map_err(|e| e.to_string())
        } else {
            Err("the device is not the CPU".to_string())
        };
        InferenceForward {
            model,
            net,
            reference: Mutex::new(None),
        }
    }

    /// Burn's forward, for the reason given.
    pub fn burn(model: &'m M, reason: impl Into<String>) -> Self {
        InferenceForward {
            model,
            net: Err(reason.into()),
            reference: Mutex::new(None),
        }
    }

    /// Logits `[batch, classes]`.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        match &self.net {
            Ok(net) => net.forward(images),
            Err(_) => self.model.forward(images),
        }
    }

    /// Logits `[batch, classes]` for images that equal `reference` (one image, channels first)
    /// but in a window, as occlusion makes them: the lowered net recomputes only what each
    /// image's difference reaches ([`InferenceNet::forward_near`]; the reference's activations
    /// are computed once and kept for the next call with the same reference). Burn's forward
    /// runs the images whole.
    pub fn forward_near(&self, reference: &[f32], images: Tensor<4>) -> Tensor<2> {
        let net = match &self.net {
            Ok(net) if reference.len() == net.input.len() => net,
            Ok(net) => return net.forward(images),
            Err(_) => return self.model.forward(images),
        };
        let kept = {
            let mut cache = self.reference.lock().unwrap_or_else(|e| e.into_inner());
            match cache.as_ref() {
                Some(r) if same_bits(r.image(), reference) => Arc::clone(r),
                _ => {
                    let r = Arc::new(net.reference(reference));
                    *cache = Some(Arc::clone(&r));
                    r
                }
            }
        };
        net.on_host(images, |values, batch| {
            net.forward_near(&kept, values, batch)
        })
    }

    pub fn is_lowered(&self) -> bool {
        self.net.is_ok()
    }

    /// Why Burn's forward runs (empty when lowered).
    pub fn reason(&self) -> &str {
        self.net.as_ref().err().map_or("", String::as_str)
    }
}

fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

/// Rows of one im2col tile.
fn tile_rows(k: usize) -> usize {
    (TILE_VALUES / k.max(1)).clamp(32, 1024)
}

/// Rows per tile for `rows` im2col rows of `k` values: [`tile_rows`], but with `par` at most an
/// equal share per thread, so a small batch (one image) still splits across the threads.
fn tile_size(k: usize, rows: usize, par: bool) -> usize {
    let threads = if par {
        rayon::current_num_threads().max(1)
    } else {
        1
    };
    tile_rows(k)
        .min(rows.div_ceil(threads).next_multiple_of(8))
        .max(1)
}

/// `dst[m, n] = lhs[m, k] * rhs[k, n]`, all row-major and contiguous, on this thread: the
/// product every lowered convolution and linear layer runs (public so benchmarks can time it
/// bare).
///
/// # Panics
/// When a slice holds fewer values than its shape needs.
pub fn matmul(dst: &mut [f32], lhs: &[f32], rhs: &[f32], m: usize, k: usize, n: usize) {
    matmul_general(dst, n, lhs, false, rhs, m, k, n);
}

/// The product behind [`matmul`], into the first `n` columns of a row-major `dst` whose rows are
/// `dst_rs` apart; `lhs` row-major `[m, k]`, or column-major (`lhs_columns`: `k` runs of `m`
/// values).
#[allow(clippy::too_many_arguments)]
fn matmul_general(
    dst: &mut [f32],
    dst_rs: usize,
    lhs: &[f32],
    lhs_columns: bool,
    rhs: &[f32],
    m: usize,
    k: usize,
    n: usize,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(n <= dst_rs && dst.len() >= (m - 1) * dst_rs + n);
    assert!(lhs.len() >= m * k && rhs.len() >= k * n);
    if k == 0 {
        for row in dst.chunks_mut(dst_rs).take(m) {
            row[..n].fill(0.0);
        }
        return;
    }
    let (lhs_cs, lhs_rs) = if lhs_columns {
        (m as isize, 1)
    } else {
        (1, k as isize)
    };
    // SAFETY: dst holds m rows of dst_rs values (the last one at least n), lhs m*k and rhs k*n
    // values (asserted above); the strides below address them (row- or column-major) within
    // those bounds.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            false,
            lhs.as_ptr(),
            lhs_cs,
            lhs_rs,
            rhs.as_ptr(),
            1,
            n as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

impl InferenceNet {
    /// Starts describing a model that takes `input` images.
    pub fn builder(input: SampleShape) -> InferenceNetBuilder {
        InferenceNetBuilder::new(input)
    }

    pub fn input_shape(&self) -> SampleShape {
        self.input
    }

    pub fn num_classes(&self) -> usize {
        self.classes
    }

    fn buffer(&self, len: usize) -> Vec<f32> {
        let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        let best = pool
            .iter()
            .enumerate()
            .filter(|(_, b)| b.capacity() >= len)
            .min_by_key(|(_, b)| b.capacity())
            .map(|(i, _)| i);
        let mut b = match best {
            Some(i) => pool.swap_remove(i),
            None => Vec::with_capacity(len),
        };
        drop(pool);
        // Every op writes each output value, so stale contents never leak; resize only zeroes
        // what the buffer did not hold before.
        b.resize(len, 0.0);
        b
    }

    fn recycle(&self, b: Vec<f32>) {
        if b.capacity() > 0 {
            let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
            if pool.len() < 8 {
                pool.push(b);
            }
        }
    }

    /// Logits `[batch * classes]` for `images` `[batch, channels, height, width]` (row-major,
    /// channels first, as a Burn tensor's data).
    ///
    /// # Panics
    /// When `images` does not hold `batch` images of the input shape.
    pub fn forward_host(&self, images: &[f32], batch: usize) -> Vec<f32> {
        let per_image = self.input.len();
        assert_eq!(
            images.len(),
            batch * per_image,
            "forward_host: {batch} images of {}",
            self.input
        );
        self.forward_split(images, batch, |ops, _, x, n, par| {
            self.run(ops, x, n, par, None)
        })
    }

    /// The batch through the network, `head` running the convolutional part: `head(ops, first,
    /// x, n, par)` takes `ops` over images `first..first + n` (channels-last `x`), `par` telling
    /// it to split each layer between the threads.
    ///
    /// Few images go through whole, each layer's output tiles shared between the threads. Many
    /// images: the threads take chunks of a few through the convolutional part, so every
    /// activation stays in the core's cache from one layer to the next; the fully connected tail
    /// then runs once over the whole batch (its weights are the large part, packed once per
    /// call).
    fn forward_split<H>(&self, images: &[f32], batch: usize, head: H) -> Vec<f32>
    where
        H: Fn(&[Op], usize, Vec<f32>, usize, bool) -> Vec<f32> + Sync,
    {
        let per_image = self.input.len();
        let threads = rayon::current_num_threads().max(1);
        let chunk = self.chunk_images();
        if batch < 2 * threads || batch <= chunk {
            let x = self.channels_last(images);
            return head(&self.ops, 0, x, batch, true);
        }
        let split = self
            .ops
            .iter()
            .position(|op| matches!(op, Op::Linear(_)))
            .unwrap_or(self.ops.len());
        let (head_ops, tail) = self.ops.split_at(split);
        let parts: Vec<Vec<f32>> = images
            .par_chunks(chunk * per_image)
            .enumerate()
            .map(|(i, src)| {
                let n = src.len() / per_image;
                let x = self.channels_last(src);
                head(head_ops, i * chunk, x, n, false)
            })
            .collect();
        let features = parts.iter().map(Vec::len).sum();
        let mut x = self.buffer(features);
        let mut at = 0;
        for part in parts {
            x[at..at + part.len()].copy_from_slice(&part);
            at += part.len();
            self.recycle(part);
        }
        self.run(tail, x, batch, true, None)
    }

    /// `images` (channels first) in a channels-last buffer.
    fn channels_last(&self, images: &[f32]) -> Vec<f32> {
        let SampleShape {
            channels: c,
            height: h,
            width: w,
        } = self.input;
        let mut x = self.buffer(images.len());
        if c == 1 {
            x.copy_from_slice(images);
        } else {
            x.chunks_mut(h * w * c)
                .zip(images.chunks(c * h * w))
                .for_each(|(dst, src)| {
                    for ci in 0..c {
                        for p in 0..h * w {
                            dst[p * c + ci] = src[ci * h * w + p];
                        }
                    }
                });
        }
        x
    }

    /// Images per chunk: the largest activation of a chunk fits in [`CHUNK_VALUES`].
    fn chunk_images(&self) -> usize {
        let largest = self
            .ops
            .iter()
            .map(|op| match op {
                Op::Save => 0,
                Op::Conv(c) => c.input.len().max(c.output.len()),
                Op::MaxPool(p) => p.input.len(),
                Op::GlobalAvgPool { input } => input.len(),
                Op::Linear(l) => l.din.max(l.dout),
            })
            .max()
            .unwrap_or(0)
            .max(self.input.len());
        (CHUNK_VALUES / largest.max(1)).max(1)
    }

    /// `ops` over `batch` channels-last samples; `par`: split each layer between the threads.
    /// `record` receives a copy of every op's output (empty for `save`).
    fn run(
        &self,
        ops: &[Op],
        input: Vec<f32>,
        batch: usize,
        par: bool,
        mut record: Option<&mut Vec<Vec<f32>>>,
    ) -> Vec<f32> {
        let mut cur = input;
        let mut saved: Option<Vec<f32>> = None;
        for op in ops {
            self.step(op, &mut cur, &mut saved, batch, par);
            if let Some(r) = record.as_deref_mut() {
                r.push(cur.clone());
            }
        }
        if let Some(s) = saved {
            self.recycle(s);
        }
        cur
    }

    /// One op of [`Self::run`]: `cur` becomes its output.
    fn step(
        &self,
        op: &Op,
        cur: &mut Vec<f32>,
        saved: &mut Option<Vec<f32>>,
        batch: usize,
        par: bool,
    ) {
        match op {
            Op::Save => {
                // The next convolution reads `cur` and writes a new buffer; the shortcut
                // keeps `cur` itself (a copy would cost a pass over memory per block).
                *saved = Some(std::mem::take(cur));
            }
            Op::Conv(conv) => {
                let mut out = self.buffer(batch * conv.output.len());
                let input: &[f32] = if cur.is_empty() {
                    saved.as_deref().unwrap_or(&[])
                } else {
                    cur
                };
                let shortcut = conv
                    .shortcut
                    .map(|(s, dims)| (s, dims, saved.as_deref().expect("a saved shortcut")));
                conv_forward(conv, input, shortcut, &mut out, batch, par);
                if conv.shortcut.is_some()
                    && let Some(s) = saved.take()
                {
                    self.recycle(s);
                }
                let old = std::mem::replace(cur, out);
                self.recycle(old);
            }
            Op::MaxPool(pool) => {
                let mut out = self.buffer(batch * pool.output.len());
                max_pool_forward(pool, cur, &mut out);
                let old = std::mem::replace(cur, out);
                self.recycle(old);
            }
            Op::GlobalAvgPool { input } => {
                let mut out = self.buffer(batch * input.c);
                let plane = input.h * input.w;
                out.chunks_mut(input.c)
                    .zip(cur.chunks(input.len()))
                    .for_each(|(dst, src)| {
                        dst.fill(0.0);
                        for px in src.chunks_exact(input.c) {
                            for (d, v) in dst.iter_mut().zip(px) {
                                *d += v;
                            }
                        }
                        let inv = 1.0 / plane as f32;
                        dst.iter_mut().for_each(|d| *d *= inv);
                    });
                let old = std::mem::replace(cur, out);
                self.recycle(old);
            }
            Op::Linear(linear) => {
                let mut out = self.buffer(batch * linear.dout);
                linear_forward(linear, cur, &mut out, batch, par);
                let old = std::mem::replace(cur, out);
                self.recycle(old);
            }
        }
    }

    /// Logits `[batch, classes]` for a batch of images, on the images' device.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        self.on_host(images, |values, batch| self.forward_host(values, batch))
    }

    /// `images` read to the host, `logits(values, batch)` run on them, and the logits back as a
    /// `[batch, classes]` tensor on the images' device.
    fn on_host(
        &self,
        images: Tensor<4>,
        logits: impl FnOnce(&[f32], usize) -> Vec<f32>,
    ) -> Tensor<2> {
        let device = images.device();
        let [batch, ..] = images.dims();
        let values = images
            .try_into_vec_as::<f32>()
            .expect("a float tensor readable on the host");
        let logits = logits(&values, batch);
        Tensor::from_data(TensorData::new(logits, [batch, self.classes]), &device)
    }
}

type ShortcutView<'a> = (Shortcut, Dims, &'a [f32]);

fn conv_forward(
    op: &ConvOp,
    input: &[f32],
    shortcut: Option<ShortcutView<'_>>,
    out: &mut [f32],
    batch: usize,
    par: bool,
) {
    let cin = op.input.c;
    let Dims {
        h: oh,
        w: ow,
        c: cout,
    } = op.output;
    let groups = op.groups;
    let k = op.patch_len();
    let rows_total = batch * oh * ow;
    let tile = tile_size(k, rows_total, par);
    debug_assert_eq!(out.len(), rows_total * cout);
    let tile_work = |col: &mut Vec<f32>, (t, out_tile): (usize, &mut [f32])| {
        let first = t * tile;
        let rows = out_tile.len() / cout;
        col.resize(rows * k, 0.0);
        if cin == 1 {
            // One input channel (a first layer): a patch row would be kw values, so im2col is
            // built transposed instead: per kernel position, one run per output row, copied
            // from a contiguous input row when the stride is 1.
            single_channel_columns(op, input, first, rows, col);
            matmul_general(out_tile, cout, col, true, &op.weight, rows, k, cout);
        } else {
            for g in 0..groups {
                // im2col: each row the (ky, kx, ci) patch of one output pixel, the group's input
                // channels. The pixel's coordinates advance with the row (no division per row).
                let mut at = PixelCursor::new(first, op.output);
                for row in col.chunks_exact_mut(k) {
                    patch_row(op, input, g, at, row);
                    at.advance(1, op.output);
                }
                group_product(op, g, col, rows, out_tile);
            }
        }
        // Epilogue while the tile is in cache: bias, shortcut, ReLU.
        let mut at = PixelCursor::new(first, op.output);
        for o in out_tile.chunks_exact_mut(cout) {
            epilogue_row(op, o, shortcut, at);
            at.advance(1, op.output);
        }
    };
    if par {
        out.par_chunks_mut(tile * cout)
            .enumerate()
            .for_each_init(Vec::new, tile_work);
    } else {
        let mut col = Vec::new();
        out.chunks_mut(tile * cout)
            .enumerate()
            .for_each(|job| tile_work(&mut col, job));
    }
}

/// Group `g`'s product of `rows` im2col rows (`col`, row-major) into its output channels of
/// `dst` (`rows` rows of all the output channels).
fn group_product(op: &ConvOp, g: usize, col: &[f32], rows: usize, dst: &mut [f32]) {
    let (k, cout) = (op.patch_len(), op.output.c);
    let cout_g = cout / op.groups;
    let weight = &op.weight[g * k * cout_g..(g + 1) * k * cout_g];
    matmul_general(
        &mut dst[g * cout_g..],
        cout,
        col,
        false,
        weight,
        rows,
        k,
        cout_g,
    );
}

/// One im2col row: the (ky, kx, ci) patch under output pixel `at`, group `g`'s input channels.
#[inline]
fn patch_row(op: &ConvOp, input: &[f32], g: usize, at: PixelCursor, row: &mut [f32]) {
    let Dims {
        h: ih,
        w: iw,
        c: cin,
    } = op.input;
    let [_, kw] = op.kernel;
    let [sh, sw] = op.stride;
    let [pt, pl] = op.pad;
    let cin_g = cin / op.groups;
    let c0 = g * cin_g;
    let run = kw * cin_g;
    let PixelCursor { b, oy, ox } = at;
    let x0 = (ox * sw).wrapping_sub(pl);
    // One contiguous run per kernel row when it lies inside and holds every channel.
    let whole_run = op.groups == 1 && x0 < iw && x0 + kw <= iw;
    for (ky, dst) in row.chunks_exact_mut(run).enumerate() {
        let iy = (oy * sh + ky).wrapping_sub(pt);
        if iy >= ih {
            dst.fill(0.0);
            continue;
        }
        let base = (b * ih + iy) * iw;
        if whole_run {
            let s = (base + x0) * cin;
            copy_run(dst, &input[s..s + run]);
        } else {
            for (kx, d) in dst.chunks_exact_mut(cin_g).enumerate() {
                let ix = (ox * sw + kx).wrapping_sub(pl);
                if ix < iw {
                    let s = (base + ix) * cin + c0;
                    copy_run(d, &input[s..s + cin_g]);
                } else {
                    d.fill(0.0);
                }
            }
        }
    }
}

/// Bias, shortcut and ReLU on the product `o` of output pixel `at`.
#[inline]
fn epilogue_row(op: &ConvOp, o: &mut [f32], shortcut: Option<ShortcutView<'_>>, at: PixelCursor) {
    let Dims {
        h: oh,
        w: ow,
        c: cout,
    } = op.output;
    for (v, b) in o.iter_mut().zip(&op.bias) {
        *v += b;
    }
    if let Some((kind, dims, saved)) = shortcut {
        let PixelCursor { b, oy, ox } = at;
        match kind {
            Shortcut::Identity => {
                let p = (b * oh + oy) * ow + ox;
                let s = &saved[p * cout..(p + 1) * cout];
                o.iter_mut().zip(s).for_each(|(v, s)| *v += s);
            }
            Shortcut::SubsamplePad { stride, pad } => {
                let (y, x) = (oy * stride, ox * stride);
                let at = ((b * dims.h + y) * dims.w + x) * dims.c;
                let s = &saved[at..at + dims.c];
                o[pad..pad + dims.c]
                    .iter_mut()
                    .zip(s)
                    .for_each(|(v, s)| *v += s);
            }
        }
    }
    if op.relu {
        o.iter_mut().for_each(|v| *v = v.max(0.0));
    }
}

/// An output pixel (image, row, column), stepped along the rows of a tile without a division
/// per row.
#[derive(Debug, Clone, Copy)]
struct PixelCursor {
    b: usize,
    oy: usize,
    ox: usize,
}

impl PixelCursor {
    /// Output pixel number `p` (images one after another, rows of `output.w`).
    fn new(p: usize, output: Dims) -> Self {
        let plane = output.h * output.w;
        PixelCursor {
            b: p / plane,
            oy: (p % plane) / output.w,
            ox: p % output.w,
        }
    }

    /// Steps `n` pixels along the current output row (at most to its end).
    fn advance(&mut self, n: usize, output: Dims) {
        self.ox += n;
        if self.ox == output.w {
            self.ox = 0;
            self.oy += 1;
            if self.oy == output.h {
                self.oy = 0;
                self.b += 1;
            }
        }
    }
}

/// The transposed im2col of a one-channel input for output pixels `first..first + rows`:
/// `col[(ky * kw + kx) * rows + r]` is the input under kernel position (ky, kx) for pixel `r`.
fn single_channel_columns(op: &ConvOp, input: &[f32], first: usize, rows: usize, col: &mut [f32]) {
    let Dims { h: ih, w: iw, .. } = op.input;
    let ow = op.output.w;
    let [kh, kw] = op.kernel;
    let [sh, sw] = op.stride;
    let [pt, pl] = op.pad;
    for ky in 0..kh {
        for kx in 0..kw {
            let dst_row = &mut col[(ky * kw + kx) * rows..(ky * kw + kx + 1) * rows];
            let mut at = PixelCursor::new(first, op.output);
            let mut r = 0;
            while r < rows {
                let PixelCursor { b, oy, ox } = at;
                // The pixels left in this output row.
                let seg = (ow - ox).min(rows - r);
                let d = &mut dst_row[r..r + seg];
                let iy = (oy * sh + ky).wrapping_sub(pt);
                if iy >= ih {
                    d.fill(0.0);
                } else {
                    let base = (b * ih + iy) * iw;
                    if sw == 1 {
                        // ix = ox + j + kx - pl: inside for j in [lo, hi).
                        let start = (ox + kx) as isize - pl as isize;
                        let lo = (-start).clamp(0, seg as isize) as usize;
                        let hi = (iw as isize - start).clamp(lo as isize, seg as isize) as usize;
                        d[..lo].fill(0.0);
                        if hi > lo {
                            let s = base + (start + lo as isize) as usize;
                            d[lo..hi].copy_from_slice(&input[s..s + (hi - lo)]);
                        }
                        d[hi..].fill(0.0);
                    } else {
                        for (j, v) in d.iter_mut().enumerate() {
                            let ix = ((ox + j) * sw + kx).wrapping_sub(pl);
                            *v = if ix < iw { input[base + ix] } else { 0.0 };
                        }
                    }
                }
                r += seg;
                at.advance(seg, op.output);
            }
        }
    }
}

/// Copies a short run (a kernel row of channels) in 8-value blocks: a library `memcpy` call per
/// run of 48 values costs more than the copy.
#[inline(always)]
fn copy_run(dst: &mut [f32], src: &[f32]) {
    let mut d = dst.chunks_exact_mut(8);
    let mut s = src.chunks_exact(8);
    for (d, s) in (&mut d).zip(&mut s) {
        let block: [f32; 8] = s.try_into().expect("8 values");
        d.copy_from_slice(&block);
    }
    for (d, s) in d.into_remainder().iter_mut().zip(s.remainder()) {
        *d = *s;
    }
}

fn max_pool_forward(op: &PoolOp, input: &[f32], out: &mut [f32]) {
    let Dims { h: oh, w: ow, c } = op.output;
    out.chunks_mut(oh * ow * c)
        .zip(input.chunks(op.input.len()))
        .for_each(|(dst, src)| {
            for oy in 0..oh {
                for ox in 0..ow {
                    pool_pixel(
                        op,
                        src,
                        &mut dst[(oy * ow + ox) * c..(oy * ow + ox + 1) * c],
                        oy,
                        ox,
                    );
                }
            }
        });
}

/// The max over the window of output pixel (`oy`, `ox`) of one image `src`, into `o`.
#[inline]
fn pool_pixel(op: &PoolOp, src: &[f32], o: &mut [f32], oy: usize, ox: usize) {
    let Dims { w: iw, c, .. } = op.input;
    let [kh, kw] = op.kernel;
    let [sh, sw] = op.stride;
    o.fill(f32::NEG_INFINITY);
    for ky in 0..kh {
        for kx in 0..kw {
            let s = ((oy * sh + ky) * iw + ox * sw + kx) * c;
            // NaN propagates, as in Burn's max pool.
            for (v, x) in o.iter_mut().zip(&src[s..s + c]) {
                if *x > *v || x.is_nan() {
                    *v = *x;
                }
            }
        }
    }
}

fn linear_forward(op: &LinearOp, input: &[f32], out: &mut [f32], batch: usize, par: bool) {
    let (din, dout) = (op.din, op.dout);
    if !par || batch < 2 {
        linear_rows(op, input, out);
        return;
    }
    // Rows split between the threads.
    let rows_per = batch.div_ceil(rayon::current_num_threads().max(1)).max(1);
    out.par_chunks_mut(rows_per * dout)
        .zip(input.par_chunks(rows_per * din))
        .for_each(|(dst, src)| linear_rows(op, src, dst));
}

fn linear_rows(op: &LinearOp, src: &[f32], dst: &mut [f32]) {
    let (din, dout) = (op.din, op.dout);
    let rows = dst.len() / dout;
    matmul(dst, src, &op.weight, rows, din, dout);
    for o in dst.chunks_exact_mut(dout) {
        for (v, b) in o.iter_mut().zip(&op.bias) {
            *v += b;
        }
        if op.relu {
            o.iter_mut().for_each(|v| *v = v.max(0.0));
        }
    }
}
