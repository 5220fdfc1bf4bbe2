//! The trainer: the training loop the checklist's steps 3 and 4 observe.
//!
//! One [`Trainer`] holds a [`Classifier`] on an autodiff device, Burn's optimizer (SGD with
//! momentum, Adam or RMSProp), a learning-rate schedule, gradient clipping, per-parameter
//! learning-rate multipliers (Caffe's `lr_mult`) and a loss weight (Caffe's `loss_weight`: the
//! diff the loss layer sends down). Each iteration goes through the [`Tap`] at the configured
//! detail, and a [`TrainHook`] sees every iteration's loss, trace, gradients and model and may
//! stop the run. A NaN or Inf loss ends training with [`TrainError::Diverged`] after the hook has
//! seen that iteration's trace; nothing panics.
//!
//! ```no_run
//! use burn::prelude::Device;
//! use model_core::bundled::{self, MnistSplit};
//! use model_core::models::LeNet;
//! use model_core::train::{OptimizerChoice, TrainConfig, Trainer, Unobserved};
//! use model_core::{LoadOptions, Normalization};
//!
//! let options = LoadOptions::default().with_cache(bundled::workspace_cache());
//! let train = bundled::mnist(MnistSplit::Train, &options)?;
//! let test = bundled::mnist(MnistSplit::Test, &options)?;
//! let device = Device::flex().autodiff();
//! device.seed(42);
//! let config = TrainConfig::new(OptimizerChoice::sgd(0.9), 0.01, Normalization::mnist()).with_batch_size(64);
//! let mut trainer = Trainer::new(LeNet::mnist(&device), config, &device);
//! let summary = trainer.fit(&train, trainer.iterations_per_epoch(&train), &mut Unobserved)?;
//! let eval = trainer.evaluate(&test)?;
//! println!("loss {:.3}, accuracy {:.2}%", summary.last_loss, 100.0 * eval.accuracy);
//! # Ok::<(), model_core::train::TrainError>(())
//! ```

use std::f64::consts::PI;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::{Module, ModuleVisitor, Param, ParamGroup};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::lr_scheduler::module_lr_scheduler::ModuleLrScheduler;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer, RmsPropConfig, SgdConfig};
use burn::prelude::*;
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::batch::{Batcher, HostBatch, Normalization};
use crate::dataset::Dataset;
use crate::error::DataError;
use crate::models::Classifier;
use crate::tap::{LayerTrace, Tap, TapDetail};

/// The optimizer and its hyper-parameters (the learning rate lives in [`TrainConfig`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum OptimizerChoice {
    /// SGD with (PyTorch/Caffe-style, undampened) momentum and L2 weight decay.
    Sgd { momentum: f64, weight_decay: f32 },
    Adam {
        beta_1: f32,
        beta_2: f32,
        epsilon: f32,
        weight_decay: f32,
    },
    RmsProp {
        alpha: f32,
        momentum: f32,
        epsilon: f32,
        weight_decay: f32,
    },
}

impl OptimizerChoice {
    /// SGD with `momentum`, no weight decay.
    pub fn sgd(momentum: f64) -> Self {
        OptimizerChoice::Sgd {
            momentum,
            weight_decay: 0.0,
        }
    }

    /// Adam with the usual betas (0.9, 0.999) and epsilon 1e-8.
    pub fn adam() -> Self {
        OptimizerChoice::Adam {
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-8,
            weight_decay: 0.0,
        }
    }

    /// RMSProp with alpha 0.99, no momentum, epsilon 1e-8.
    pub fn rms_prop() -> Self {
        OptimizerChoice::RmsProp {
            alpha: 0.99,
            momentum: 0.0,
            epsilon: 1e-8,
            weight_decay: 0.0,
        }
    }

    fn init(&self) -> ModuleOptimizer {
        let decay = |w: f32| (w > 0.0).then(|| WeightDecayConfig::new(w));
        match *self {
            OptimizerChoice::Sgd {
                momentum,
                weight_decay,
            } => SgdConfig::new()
                .with_momentum((momentum > 0.0).then(|| {
                    MomentumConfig::new()
                        .with_momentum(momentum)
                        .with_dampening(0.0)
                }))
                .with_weight_decay(decay(weight_decay))
                .init(),
            OptimizerChoice::Adam {
                beta_1,
                beta_2,
                epsilon,
                weight_decay,
            } => AdamConfig::new()
                .with_beta_1(beta_1)
                .with_beta_2(beta_2)
                .with_epsilon(epsilon)
                .with_weight_decay(decay(weight_decay))
                .init(),
            OptimizerChoice::RmsProp {
                alpha,
                momentum,
                epsilon,
                weight_decay,
            } => RmsPropConfig::new()
                .with_alpha(alpha)
                .with_momentum(momentum)
                .with_epsilon(epsilon)
                .with_weight_decay(decay(weight_decay))
                .init(),
        }
    }
}

/// How the base learning rate changes over iterations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum LrSchedule {
    Fixed,
    /// Multiplied by `gamma` every `step_size` iterations (Caffe's `step`).
    Step {
        step_size: usize,
        gamma: f64,
    },
    /// Cosine annealing from the base rate to `min_lr` over `total` iterations.
    Cosine {
        total: usize,
        min_lr: f64,
    },
}

impl LrSchedule {
    /// The learning rate at `iteration` (from 0) for base rate `base`.
    pub fn lr(&self, base: f64, iteration: usize) -> f64 {
        match *self {
            LrSchedule::Fixed => base,
            LrSchedule::Step { step_size, gamma } => {
                base * gamma.powi((iteration / step_size.max(1)) as i32)
            }
            LrSchedule::Cosine { total, min_lr } => {
                let t = (iteration as f64 / total.max(1) as f64).min(1.0);
                min_lr + (base - min_lr) * 0.5 * (1.0 + (PI * t).cos())
            }
        }
    }
}

/// Gradient clipping, applied to the gradients before the optimizer step.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "threshold")]
pub enum Clipping {
    /// Every gradient value clamped to `[-t, t]`.
    Value(f32),
    /// All gradients scaled together so that their global L2 norm is at most `t` (Caffe's
    /// `clip_gradients`, PyTorch's `clip_grad_norm_`).
    Norm(f32),
}

/// A learning-rate multiplier for the parameters whose module path matches a regular
/// expression (`r"\.bias$"` with 2.0 is Caffe's LeNet setting). The last matching rule wins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LrMult {
    pub pattern: String,
    pub mult: f64,
}

/// Everything a training run needs besides the model and the data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub optimizer: OptimizerChoice,
    pub lr: f64,
    pub schedule: LrSchedule,
    pub clipping: Option<Clipping>,
    pub lr_mults: Vec<LrMult>,
    /// The loss is multiplied by this before the backward pass.
    pub loss_weight: f32,
    pub batch_size: usize,
    pub seed: u64,
    pub normalization: Normalization,
    pub tap: TapDetail,
    /// Run the tap on every `tap_every`-th iteration only (the others run plain).
    #[serde(default = "one")]
    pub tap_every: usize,
    /// Show an indicatif progress bar (on a terminal).
    pub progress: bool,
    /// Save the model every this many iterations into `checkpoint_dir` (burnpack files).
    pub checkpoint_every: Option<usize>,
    pub checkpoint_dir: Option<PathBuf>,
    /// A planted slow layer (name, extra forward seconds): the profiler's `slow-layer` fault.
    #[serde(default)]
    pub planted_delay: Option<(String, f64)>,
}

impl TrainConfig {
    /// Batch 64, seed 42, fixed schedule, no clipping, no multipliers, loss weight 1, tap off.
    pub fn new(optimizer: OptimizerChoice, lr: f64, normalization: Normalization) -> Self {
        TrainConfig {
            optimizer,
            lr,
            schedule: LrSchedule::Fixed,
            clipping: None,
            lr_mults: Vec::new(),
            loss_weight: 1.0,
            batch_size: 64,
            seed: 42,
            normalization,
            tap: TapDetail::Off,
            tap_every: 1,
            progress: false,
            checkpoint_every: None,
            checkpoint_dir: None,
            planted_delay: None,
        }
    }

    pub fn with_schedule(mut self, schedule: LrSchedule) -> Self {
        self.schedule = schedule;
        self
    }

    pub fn with_clipping(mut self, clipping: Option<Clipping>) -> Self {
        self.clipping = clipping;
        self
    }

    /// Adds a learning-rate multiplier for the parameters matching `pattern`.
    pub fn with_lr_mult(mut self, pattern: impl Into<String>, mult: f64) -> Self {
        self.lr_mults.push(LrMult {
            pattern: pattern.into(),
            mult,
        });
        self
    }

    pub fn with_loss_weight(mut self, weight: f32) -> Self {
        self.loss_weight = weight;
        self
    }

    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size;
        self
    }

    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    pub fn with_tap(mut self, tap: TapDetail) -> Self {
        self.tap = tap;
        self
    }

    /// Runs the tap on every `every`-th iteration only (a monitor that samples).
    pub fn with_tap_every(mut self, every: usize) -> Self {
        self.tap_every = every.max(1);
        self
    }

    /// Plants a slow layer: `layer`'s forward spends `seconds` more (tap on only).
    pub fn with_planted_delay(mut self, layer: impl Into<String>, seconds: f64) -> Self {
        self.planted_delay = Some((layer.into(), seconds));
        self
    }

    pub fn with_progress(mut self, progress: bool) -> Self {
        self.progress = progress;
        self
    }

    pub fn with_checkpoints(mut self, dir: impl Into<PathBuf>, every: usize) -> Self {
        self.checkpoint_dir = Some(dir.into());
        self.checkpoint_every = Some(every.max(1));
        self
    }
}

fn one() -> usize {
    1
}

/// Why training stopped early.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error("training diverged at iteration {iteration}: the loss is {loss}")]
    Diverged { iteration: usize, loss: f32 },
    #[error("{what}")]
    Config { what: String },
    #[error("{}: cannot save the checkpoint: {message}", path.display())]
    Checkpoint { path: PathBuf, message: String },
}

/// What a hook sees after each iteration's backward pass (before the optimizer step).
pub struct IterationReport<'a, M> {
    /// From 0.
    pub iteration: usize,
    pub epoch: usize,
    pub loss: f32,
    /// The base learning rate of this iteration.
    pub lr: f64,
    /// The iteration's trace, when the tap is on.
    pub trace: Option<&'a LayerTrace>,
    pub model: &'a M,
    /// The parameter gradients (before clipping).
    pub grads: &'a GradientsParams,
    /// Wall time of the iteration (data, forward, backward), before the optimizer step.
    pub seconds: f64,
}

/// Whether training goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Continue,
    Stop,
}

/// Observes every iteration; closures `FnMut(&IterationReport<M>) -> Control` are hooks.
pub trait TrainHook<M> {
    fn on_iteration(&mut self, report: &IterationReport<'_, M>) -> Control;
}

impl<M, F: FnMut(&IterationReport<'_, M>) -> Control> TrainHook<M> for F {
    fn on_iteration(&mut self, report: &IterationReport<'_, M>) -> Control {
        self(report)
    }
}

/// A hook that watches nothing and never stops the run.
#[derive(Debug, Clone, Copy, Default)]
pub struct Unobserved;

impl<M> TrainHook<M> for Unobserved {
    fn on_iteration(&mut self, _report: &IterationReport<'_, M>) -> Control {
        Control::Continue
    }
}

/// How a [`Trainer::fit`] run went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FitSummary {
    pub iterations: usize,
    pub epochs_started: usize,
    pub first_loss: f32,
    pub last_loss: f32,
    /// Mean loss over the last `min(50, iterations)` iterations.
    pub recent_loss: f32,
    pub seconds: f64,
    pub images_per_second: f64,
    pub stopped_by_hook: bool,
}

/// Accuracy and loss on a held-out set.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub images: usize,
    pub correct: usize,
    pub accuracy: f64,
    pub mean_loss: f64,
    pub seconds: f64,
}

/// One iteration's outcome.
#[derive(Debug)]
pub struct StepOutcome {
    pub loss: f32,
    pub trace: Option<LayerTrace>,
    /// Data, forward and backward (before the optimizer step).
    pub seconds: f64,
    /// The optimizer step (device synchronised around it).
    pub optimizer_seconds: f64,
}

/// The training loop; see the module documentation.
pub struct Trainer<M: Classifier> {
    model: Option<M>,
    optimizer: ModuleOptimizer,
    config: TrainConfig,
    device: Device,
    batcher: Batcher,
    groups: Vec<(ParamGroup, f64)>,
    iteration: usize,
}

impl<M: Classifier> Trainer<M> {
    /// A trainer for `model` (created on `device`, which should be an autodiff device).
    ///
    /// Invalid `lr_mults` patterns are reported by the first [`Trainer::step`] as
    /// [`TrainError::Config`].
    pub fn new(model: M, config: TrainConfig, device: &Device) -> Self {
        let device = if device.is_autodiff() {
            device.clone()
        } else {
            device.clone().autodiff()
        };
        // `train` applies each parameter's configured gradient requirement on the autodiff
        // device: a model built on a plain device (or taken from `valid()`) trains too.
        let model = model.fork(&device).train();
        let batcher = Batcher::new(
            config.batch_size.max(1),
            config.seed,
            config.normalization.clone(),
        );
        Trainer {
            model: Some(model),
            optimizer: config.optimizer.init(),
            groups: Vec::new(),
            config,
            device,
            batcher,
            iteration: 0,
        }
    }

    pub fn model(&self) -> &M {
        self.model
            .as_ref()
            .expect("the model is always put back after a step")
    }

    pub fn into_model(mut self) -> M {
        self.model
            .take()
            .expect("the model is always put back after a step")
    }

    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Iterations done so far.
    pub fn iteration(&self) -> usize {
        self.iteration
    }

    /// The batcher this trainer draws with (seeded by the config).
    pub fn batcher(&self) -> &Batcher {
        &self.batcher
    }

    /// Iterations in one epoch of `dataset`.
    pub fn iterations_per_epoch(&self, dataset: &Dataset) -> usize {
        dataset.len().div_ceil(self.batcher.batch_size.max(1))
    }

    fn check_input(&self, dataset: &Dataset) -> Result<(), TrainError> {
        let want = self.model().input_shape();
        let have = dataset.shape();
        if want != have {
            return Err(TrainError::Config {
                what: format!(
                    "{} expects {}x{}x{} images; dataset `{}` has {}x{}x{}",
                    self.model().name(),
                    want.channels,
                    want.height,
                    want.width,
                    dataset.name(),
                    have.channels,
                    have.height,
                    have.width
                ),
            });
        }
        if dataset.class_names().len() > self.model().num_classes() {
            return Err(TrainError::Config {
                what: format!(
                    "{} has {} outputs; dataset `{}` has {} classes",
                    self.model().name(),
                    self.model().num_classes(),
                    dataset.name(),
                    dataset.class_names().len()
                ),
            });
        }
        Ok(())
    }

    fn lr_groups(&mut self) -> Result<(), TrainError> {
        if self.groups.len() == self.config.lr_mults.len() {
            return Ok(());
        }
        self.groups = self
            .config
            .lr_mults
            .iter()
            .map(|m| {
                ParamGroup::from_regex(&m.pattern)
                    .map(|g| (g, m.mult))
                    .map_err(|e| TrainError::Config {
                        what: format!("lr_mult pattern `{}`: {e:?}", m.pattern),
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(())
    }

    /// One training iteration on a host batch: forward, backward, hook, optimizer step.
    /// `data_seconds` is the time it took to assemble the batch (the data layer's time).
    pub fn step(
        &mut self,
        batch: &HostBatch,
        data_seconds: f64,
        epoch: usize,
        hook: &mut dyn TrainHook<M>,
    ) -> Result<(StepOutcome, Control), TrainError> {
        self.lr_groups()?;
        let started = Instant::now();
        let tensors = self.batcher.to_tensors(batch, &self.device)?;
        let data_seconds = data_seconds + started.elapsed().as_secs_f64();
        let started = Instant::now();

        let model = self
            .model
            .take()
            .expect("the model is always put back after a step");
        let detail = if self.iteration.is_multiple_of(self.config.tap_every.max(1)) {
            self.config.tap
        } else {
            TapDetail::Off
        };
        let mut tap = Tap::new(detail);
        if let Some((layer, seconds)) = &self.config.planted_delay {
            tap = tap.with_delay(layer, *seconds);
        }
        tap.data_layer("data", &tensors.images, data_seconds);
        let logits = model.forward_tapped(tensors.images, &mut tap);
        let criterion = CrossEntropyLossConfig::new().init(&self.device);
        let labels = tensors.labels;
        let loss = tap.loss("loss", "SoftmaxWithLoss", logits, |logits| {
            criterion.forward(logits, labels)
        });
        let loss_value = loss.clone();
        if !loss.is_tracked() {
            self.model = Some(model);
            return Err(TrainError::Config {
                what: "the loss does not depend on any parameter that requires a gradient (all frozen?)".into(),
            });
        }
        let (grads, trace) = tap.backward_weighted(loss, self.config.loss_weight, &model);
        let loss_value: f32 = loss_value
            .inner()
            .try_into_scalar::<f32>()
            .unwrap_or(f32::NAN);
        let seconds = started.elapsed().as_secs_f64() + data_seconds;

        let lr = self.config.schedule.lr(self.config.lr, self.iteration);
        let control = hook.on_iteration(&IterationReport {
            iteration: self.iteration,
            epoch,
            loss: loss_value,
            lr,
            trace: trace.as_ref(),
            model: &model,
            grads: &grads,
            seconds,
        });
        if !loss_value.is_finite() {
            self.model = Some(model);
            return Err(TrainError::Diverged {
                iteration: self.iteration,
                loss: loss_value,
            });
        }

        let grads = match self.config.clipping {
            Some(clipping) => clip(&model, grads, clipping),
            None => grads,
        };
        let mut schedule = ModuleLrScheduler::new(lr);
        for (group, mult) in &self.groups {
            schedule = schedule.with_group(group.clone(), lr * mult);
        }
        let _ = self.device.sync();
        let optimizer_started = Instant::now();
        let model = self.optimizer.step(schedule.step(), model, grads);
        let _ = self.device.sync();
        let optimizer_seconds = optimizer_started.elapsed().as_secs_f64();
        self.model = Some(model);
        self.iteration += 1;

        if let (Some(every), Some(dir)) =
            (self.config.checkpoint_every, &self.config.checkpoint_dir)
            && self.iteration.is_multiple_of(every)
        {
            let path = dir.join(format!("{}-iter{}", self.model().name(), self.iteration));
            self.save_checkpoint(&path)?;
        }
        Ok((
            StepOutcome {
                loss: loss_value,
                trace,
                seconds,
                optimizer_seconds,
            },
            control,
        ))
    }

    /// Trains for `iterations` iterations over seeded, shuffled epochs of `train`.
    pub fn fit(
        &mut self,
        train: &Dataset,
        iterations: usize,
        hook: &mut dyn TrainHook<M>,
    ) -> Result<FitSummary, TrainError> {
        self.check_input(train)?;
        if train.is_empty() {
            return Err(TrainError::Config {
                what: format!("dataset `{}` is empty", train.name()),
            });
        }
        let per_epoch = self.iterations_per_epoch(train);
        let bar = if self.config.progress {
            let bar = ProgressBar::new(iterations as u64);
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix} {bar:30} {pos}/{len} {msg} [{elapsed} < {eta}]",
                )
                .expect("valid template"),
            );
            bar.set_prefix(format!("training {}", self.model().name()));
            bar
        } else {
            ProgressBar::hidden()
        };
        let started = Instant::now();
        let (mut first, mut last) = (f32::NAN, f32::NAN);
        let mut recent: std::collections::VecDeque<f32> = std::collections::VecDeque::new();
        let mut done = 0;
        let mut images = 0usize;
        let mut stopped = false;
        let mut epoch = self.iteration / per_epoch;
        let mut plan = self.batcher.plan(train.len(), epoch as u64);
        let mut next = self.iteration % per_epoch;
        while done < iterations {
            if next >= plan.len() {
                epoch += 1;
                plan = self.batcher.plan(train.len(), epoch as u64);
                next = 0;
            }
            let assemble = Instant::now();
            let batch = self.batcher.assemble(train, &plan[next])?;
            let data_seconds = assemble.elapsed().as_secs_f64();
            next += 1;
            let result = self.step(&batch, data_seconds, epoch, hook);
            let (outcome, control) = match result {
                Ok(ok) => ok,
                Err(e) => {
                    bar.abandon_with_message(format!("stopped: {e}"));
                    return Err(e);
                }
            };
            done += 1;
            images += batch.items.len();
            if done == 1 {
                first = outcome.loss;
            }
            last = outcome.loss;
            recent.push_back(outcome.loss);
            if recent.len() > 50 {
                recent.pop_front();
            }
            bar.inc(1);
            if done % 10 == 0 || done == iterations {
                let rate = images as f64 / started.elapsed().as_secs_f64().max(1e-9);
                bar.set_message(format!("loss {last:.4} {rate:.0} img/s epoch {epoch}"));
            }
            if control == Control::Stop {
                stopped = true;
                break;
            }
        }
        bar.finish_and_clear();
        let seconds = started.elapsed().as_secs_f64();
        Ok(FitSummary {
            iterations: done,
            epochs_started: epoch + 1,
            first_loss: first,
            last_loss: last,
            recent_loss: recent.iter().sum::<f32>() / recent.len().max(1) as f32,
            seconds,
            images_per_second: images as f64 / seconds.max(1e-9),
            stopped_by_hook: stopped,
        })
    }

    /// Accuracy and mean loss of the current model on `dataset` (inference mode: batch norm
    /// uses its running statistics, dropout is off, no autodiff).
    pub fn evaluate(&self, dataset: &Dataset) -> Result<Evaluation, TrainError> {
        self.check_input(dataset)?;
        evaluate(
            &self.model().valid(),
            dataset,
            &self.batcher,
            &self.device.clone().inner(),
        )
    }

    /// Saves the model as a burnpack file (`.bpk` is added when `path` has no extension).
    pub fn save_checkpoint(&self, path: &Path) -> Result<(), TrainError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| TrainError::Checkpoint {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
        }
        self.model()
            .clone()
            .save_file(path)
            .map_err(|e| TrainError::Checkpoint {
                path: path.to_path_buf(),
                message: format!("{e:?}"),
            })
    }
}

/// Accuracy and mean loss of `model` on `dataset`, batches drawn in order by `batcher`'s size
/// and normalisation, on `device`. On the CPU a model that lowers runs as an
/// [`InferenceNet`](crate::inference::InferenceNet) (the same logits up to float rounding, 3-4x
/// faster); elsewhere through Burn's forward.
pub fn evaluate<M: Classifier>(
    model: &M,
    dataset: &Dataset,
    batcher: &Batcher,
    device: &Device,
) -> Result<Evaluation, TrainError> {
    let started = Instant::now();
    let batcher = batcher.clone().in_order();
    let criterion = CrossEntropyLossConfig::new().init(device);
    let lowered = crate::inference::InferenceForward::new(model, device);
    let (mut correct, mut loss_sum, mut images) = (0usize, 0f64, 0usize);
    for batch in batcher.host_batches(dataset, 0) {
        let batch = batch?;
        let n = batch.items.len();
        let tensors = batcher.to_tensors(&batch, device)?;
        let logits = lowered.forward(tensors.images);
        let loss = criterion.forward(logits.clone(), tensors.labels.clone());
        let hits = logits
            .argmax(1)
            .squeeze_dim::<1>(1)
            .equal(tensors.labels)
            .int()
            .sum();
        let values = Tensor::cat(vec![loss.mul_scalar(n as f32), hits.float()], 0)
            .try_into_vec_as::<f32>()
            .map_err(|e| TrainError::Config {
                what: format!("reading evaluation results: {e:?}"),
            })?;
        loss_sum += values[0] as f64;
        correct += values[1].round() as usize;
        images += n;
    }
    Ok(Evaluation {
        images,
        correct,
        accuracy: correct as f64 / images.max(1) as f64,
        mean_loss: loss_sum / images.max(1) as f64,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Applies `clipping` to every gradient of `model` in `grads`.
fn clip<M: Module>(model: &M, mut grads: GradientsParams, clipping: Clipping) -> GradientsParams {
    match clipping {
        Clipping::Value(t) => {
            let mut v = GradVisitor {
                grads: &mut grads,
                op: GradOp::Clamp(t),
            };
            model.visit(&mut v);
        }
        Clipping::Norm(t) => {
            let norm = gradient_norm(model, &grads);
            if norm.is_finite() && norm > t {
                let mut v = GradVisitor {
                    grads: &mut grads,
                    op: GradOp::Scale(t / norm),
                };
                model.visit(&mut v);
            }
        }
    }
    grads
}

/// The global L2 norm of `model`'s gradients in `grads` (one read from the device).
pub fn gradient_norm<M: Module>(model: &M, grads: &GradientsParams) -> f32 {
    let mut v = NormVisitor { grads, sq: None };
    model.visit(&mut v);
    v.sq.map(|s| {
        s.sqrt()
            .inner()
            .try_into_scalar::<f32>()
            .unwrap_or(f32::NAN)
    })
    .unwrap_or(0.0)
}

struct NormVisitor<'a> {
    grads: &'a GradientsParams,
    sq: Option<Tensor<1>>,
}

impl ModuleVisitor for NormVisitor<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.get::<D>(param.id) {
            let s = g.square().sum();
            self.sq = Some(match self.sq.take() {
                Some(acc) => acc + s,
                None => s,
            });
        }
    }
}

enum GradOp {
    Clamp(f32),
    Scale(f32),
}

struct GradVisitor<'a> {
    grads: &'a mut GradientsParams,
    op: GradOp,
}

impl ModuleVisitor for GradVisitor<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        match self.op {
            GradOp::Clamp(t) => {
                if let Some(g) = self.grads.remove::<D>(param.id) {
                    self.grads.register::<D>(param.id, g.clamp(-t, t));
                }
            }
            GradOp::Scale(s) => {
                if let Some(g) = self.grads.remove::<D>(param.id) {
                    self.grads.register::<D>(param.id, g.mul_scalar(s));
                }
            }
        }
    }
}
