//! The checklist's one training run, shared by the steps that need a trained model.
//!
//! The timings step reads the per-layer times off its iterations, the gradients step reads the
//! data/diff statistics of the same iterations, the weights step round-trips the trained model
//! through a checkpoint and the results step maps what it learnt: one run instead of four, so
//! all five steps together cost little more than their parts.
//!
//! A fault planted for the gradients step (`lr-x100`, `nan=LAYER`, `bias-lr-mult`) would poison
//! the model every later step looks at; such a run is trained on its own, for the gradients step
//! only, so the other steps stay as they were. The `slow-layer` fault only costs time and stays in
//! the shared run.

use std::time::Instant;

use grad_monitor::{GradMonitor, MonitorConfig};
use model_core::tap::TapDetail;
use model_core::train::{
    Control, IterationReport, OptimizerChoice, TrainConfig, TrainError, TrainHook, Trainer,
};
use profiler::IterationRecord;

use crate::checklist::{RunError, StepContext, interrupted};
use crate::gradients_step::Faults;
use crate::model::RunModel;
use crate::with_model;

/// Iterations at the start of the run that the profile leaves out (kernel compilation, caches,
/// the allocator warming up).
pub const PROFILE_WARMUP: usize = 3;

/// What one training run left behind.
pub struct TrainingRun {
    /// The model after the last iteration that ran.
    pub model: RunModel,
    /// The timed iterations after [`PROFILE_WARMUP`], for the profiler.
    pub records: Vec<IterationRecord>,
    /// Every iteration's statistics, for the gradient checks.
    pub monitor: GradMonitor,
    /// Iterations that ran (fewer than asked when the loss diverged or the run was interrupted).
    pub iterations: usize,
    /// The iteration and loss at which the loss stopped being finite.
    pub diverged: Option<(usize, f32)>,
    pub batch_size: usize,
    pub seconds: f64,
}

/// The monitor and the profile records as the trainer's hook.
struct Watch<'a> {
    monitor: &'a mut GradMonitor,
    iteration: usize,
}

impl<M> TrainHook<M> for Watch<'_> {
    fn on_iteration(&mut self, report: &IterationReport<'_, M>) -> Control {
        if let Some(trace) = report.trace {
            self.monitor
                .observe(self.iteration, report.loss, report.lr, trace);
        }
        if interrupted() {
            Control::Stop
        } else {
            Control::Continue
        }
    }
}

/// The trainer's settings for the run: SGD with momentum 0.9 at 0.01 (Caffe's LeNet solver), the
/// tap at full detail, with `faults` and a planted `slow` layer applied.
pub fn config(cx: &StepContext<'_>, faults: &Faults, slow: Option<&str>) -> TrainConfig {
    let lr = cx.settings.train.lr * if faults.lr_x100 { 100.0 } else { 1.0 };
    let mut config = TrainConfig::new(
        OptimizerChoice::sgd(cx.settings.train.momentum),
        lr,
        cx.normalization.clone(),
    )
    .with_seed(cx.args.seed)
    .with_batch_size(cx.settings.train.batch_size)
    .with_tap(TapDetail::Full)
    .with_progress(true);
    if let Some((layer, factor)) = &faults.bias_lr_mult {
        config = config.with_lr_mult(format!("^{}\\.bias$", layer.replace('.', "\\.")), *factor);
    }
    if let Some(layer) = slow {
        config = config.with_planted_delay(layer, cx.settings.timings.slow_layer_seconds);
    }
    config
}

/// Trains the run's model for `--iterations` with the tap at full detail, the gradient monitor
/// watching and every iteration's trace kept for the profiler. A diverging loss ends the run
/// cleanly (the monitor has seen the last iteration); so does Ctrl-C.
pub fn train(
    cx: &StepContext<'_>,
    faults: &Faults,
    slow: Option<&str>,
    monitor_config: &MonitorConfig,
) -> Result<TrainingRun, RunError> {
    let started = Instant::now();
    let config = config(cx, faults, slow);
    let iterations = cx.args.iterations as usize;
    let mut monitor = GradMonitor::new(monitor_config.clone(), &config.lr_mults);
    let nan_at = iterations / 3;
    let mut records = Vec::with_capacity(iterations.saturating_sub(PROFILE_WARMUP));
    let mut diverged = None;
    let mut ran = 0;
    let batch_size = config.batch_size;
    let model = with_model!(cx.run_model.clone(), m => {
        let mut trainer = Trainer::new(m, config.clone(), &cx.device);
        let batcher = trainer.batcher().clone();
        let plan = batcher.plan(cx.train.len(), 0);
        if plan.is_empty() {
            return Err(RunError::Usage(format!("dataset `{}` is empty", cx.train.name())));
        }
        let origin = Instant::now();
        for i in 0..iterations {
            if interrupted() {
                break;
            }
            if i == nan_at && let Some(layer) = &faults.nan {
                let prefix = format!("{layer}.");
                let (model, planted) = model_core::models::plant_nan(trainer.model().clone(), |path| {
                    path.starts_with(&prefix) && path.ends_with("weight")
                });
                if planted == 0 {
                    return Err(RunError::Usage(format!("--inject nan={layer}: no weight under `{layer}`")));
                }
                trainer = Trainer::new(model, config.clone(), &cx.device);
            }
            let step_started = Instant::now();
            let batch = batcher.assemble(cx.train, &plan[i % plan.len()])?;
            let data_seconds = step_started.elapsed().as_secs_f64();
            let mut watch = Watch { monitor: &mut monitor, iteration: i };
            match trainer.step(&batch, data_seconds, 0, &mut watch) {
                Ok((outcome, control)) => {
                    ran += 1;
                    if i >= PROFILE_WARMUP.min(iterations.saturating_sub(1))
                        && let Some(trace) = outcome.trace
                    {
                        records.push(IterationRecord {
                            start: step_started.duration_since(origin).as_secs_f64(),
                            wall_seconds: step_started.elapsed().as_secs_f64(),
                            optimizer_seconds: outcome.optimizer_seconds,
                            trace,
                        });
                    }
                    if control == Control::Stop {
                        break;
                    }
                }
                Err(TrainError::Diverged { iteration, loss }) => {
                    // The monitor has seen this iteration; training ends here.
                    ran += 1;
                    diverged = Some((iteration, loss));
                    break;
                }
                Err(e) => return Err(RunError::Usage(format!("training: {e}"))),
            }
        }
        RunModel::from(trainer.into_model())
    });
    Ok(TrainingRun {
        model,
        records,
        monitor,
        iterations: ran,
        diverged,
        batch_size,
        seconds: started.elapsed().as_secs_f64(),
    })
}
