//! Step 2 of the checklist, **check the weights**.
//!
//! Proves that imported (transfer-learning) weights really landed in the model, tensor by
//! tensor: applied, missing (in the model, not in the file), unused (in the file, not in the
//! model), mismatched (shape), the values read back *from the model* after loading and compared
//! with the file's, and tensors that still hold their initial values (equal to a freshly
//! initialised model with the same seed while the file says otherwise). Shows the weights as
//! pictures (the first convolution's filters as a tile grid, as in AlexNet's paper) and compares
//! two weight sets tensor by tensor.
//!
//! The file is read on its own (burn-store's reader, not the loader's bookkeeping), and the model
//! is read back in the file's naming and layout through burn-store's Burn-to-PyTorch adapter, so
//! the comparison is exact: `conv1.weight` in the model against `conv1.weight` in the file.

mod picture;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::store::{
    BurnToPyTorchAdapter, BurnpackStore, ModuleSnapshot, ModuleStore, PyTorchToBurnAdapter,
    SafetensorsStore,
};
use model_core::models::PytorchImport;
use model_core::{Finding, Verdict};
use serde::{Deserialize, Serialize};

pub use picture::{conv_filter_grid, heat_map};

/// The format of a weights file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum WeightFormat {
    /// PyTorch `.pt`/`.pth`/`.th` (zip or the legacy pre-1.6 format), keys mapped as given.
    Pytorch(PytorchImport),
    /// Burn's own burnpack (`.bpk`), as `Module::save_file` writes it.
    Burnpack,
    /// SafeTensors (`.safetensors`) in PyTorch's naming and layout (as `safetensors.torch.save_file`
    /// writes a state dict), keys mapped as given.
    Safetensors(PytorchImport),
}

impl WeightFormat {
    /// Burnpack for a `.bpk` file, else PyTorch with `import`.
    pub fn for_path(path: &Path, import: PytorchImport) -> Self {
        match path.extension().and_then(|e| e.to_str()) {
            Some("bpk") => WeightFormat::Burnpack,
            Some("safetensors") => WeightFormat::Safetensors(import),
            _ => WeightFormat::Pytorch(import),
        }
    }

    /// Loads the file at `path` into `model` by parameter name (missing tensors allowed: the
    /// proof reports them), returning what the loader says it did.
    pub fn load_into<M: Module>(
        &self,
        model: &mut M,
        path: &Path,
    ) -> Result<model_core::models::ImportOutcome, WeightError> {
        let fail = |reason: String| WeightError {
            path: path.to_path_buf(),
            reason,
        };
        let result = match self {
            WeightFormat::Pytorch(import) => {
                let mut store = import.store(path).allow_partial(true).validate(true);
                model
                    .load_from(&mut store)
                    .map_err(|e| fail(e.to_string()))?
            }
            WeightFormat::Burnpack => {
                let mut store = BurnpackStore::from_file(path).allow_partial(true);
                model
                    .load_from(&mut store)
                    .map_err(|e| fail(format!("{e:?}")))?
            }
            WeightFormat::Safetensors(import) => {
                let mut store = SafetensorsStore::from_file(path)
                    .with_from_adapter(PyTorchToBurnAdapter)
                    .allow_partial(true);
                for (from, to) in &import.key_remapping {
                    store = store.with_key_remapping(from, to.clone());
                }
                model
                    .load_from(&mut store)
                    .map_err(|e| fail(e.to_string()))?
            }
        };
        Ok(model_core::models::ImportOutcome {
            applied: result.applied.clone(),
            missing: result.missing.iter().map(|(p, _)| p.clone()).collect(),
            unused: result.unused.clone(),
            errors: result.errors.iter().map(|e| format!("{e:?}")).collect(),
        })
    }
}

/// A weights file that cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("{}: cannot read the weights: {reason}", path.display())]
pub struct WeightError {
    pub path: PathBuf,
    pub reason: String,
}

/// One tensor's values, flattened, with its shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Weights {
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

/// Every tensor of a weights file, by name (after the format's key mapping).
pub fn read_file(
    path: &Path,
    format: &WeightFormat,
) -> Result<BTreeMap<String, Weights>, WeightError> {
    let fail = |reason: String| WeightError {
        path: path.to_path_buf(),
        reason,
    };
    if !path.is_file() {
        return Err(fail("no such file".into()));
    }
    let tensors = match format {
        WeightFormat::Pytorch(import) => {
            let mut store = import.store(path);
            let all = store.get_all_tensors().map_err(|e| fail(e.to_string()))?;
            convert(all).map_err(fail)?
        }
        WeightFormat::Burnpack => {
            let mut store = BurnpackStore::from_file(path);
            let all = store
                .get_all_tensors()
                .map_err(|e| fail(format!("{e:?}")))?;
            convert(all).map_err(fail)?
        }
        WeightFormat::Safetensors(import) => {
            let mut store = SafetensorsStore::from_file(path);
            for (from, to) in &import.key_remapping {
                store = store.with_key_remapping(from, to.clone());
            }
            let all = store.get_all_tensors().map_err(|e| fail(e.to_string()))?;
            convert(all).map_err(fail)?
        }
    };
    Ok(tensors)
}

fn convert(
    all: &BTreeMap<String, burn::store::burn_pack::Tensor>,
) -> Result<BTreeMap<String, Weights>, String> {
    let mut out = BTreeMap::new();
    for (name, tensor) in all {
        let data = burn::store::bridge::to_data(tensor).map_err(|e| format!("{name}: {e:?}"))?;
        let values = data
            .convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(|e| format!("{name}: {e:?}"))?;
        out.insert(
            name.clone(),
            Weights {
                shape: tensor.shape.to_vec(),
                values,
            },
        );
    }
    Ok(out)
}

/// Every float tensor of `model` (parameters and running statistics), read back from the model
/// in the naming and layout of `format` (PyTorch's for PyTorch files).
pub fn read_model<M: Module>(model: &M, format: &WeightFormat) -> BTreeMap<String, Weights> {
    let adapter: Option<Box<dyn burn::store::ModuleAdapter>> = match format {
        WeightFormat::Pytorch(_) | WeightFormat::Safetensors(_) => {
            Some(Box::new(BurnToPyTorchAdapter))
        }
        WeightFormat::Burnpack => None,
    };
    convert(
        &model
            .collect(None, adapter, true)
            .into_iter()
            .map(|t| (t.name.clone(), t))
            .collect(),
    )
    .unwrap_or_default()
}

/// Statistics of one tensor's values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TensorStats {
    pub count: usize,
    pub min: f32,
    pub max: f32,
    pub mean: f64,
    pub std: f64,
    /// Share of exact zeros.
    pub zeros: f64,
    pub nan: usize,
    pub inf: usize,
    /// Counts of the finite values in [`HISTOGRAM_BINS`] equal bins over `[min, max]`.
    pub histogram: Vec<u32>,
}

/// Bins of each tensor's histogram.
pub const HISTOGRAM_BINS: usize = 32;

impl TensorStats {
    pub fn of(values: &[f32]) -> Self {
        let finite: Vec<f64> = values
            .iter()
            .filter(|v| v.is_finite())
            .map(|&v| v as f64)
            .collect();
        let n = finite.len().max(1) as f64;
        let mean = finite.iter().sum::<f64>() / n;
        let var = finite.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
        let (lo, hi) = finite
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &v| {
                (l.min(v), h.max(v))
            });
        let mut histogram = vec![0u32; HISTOGRAM_BINS];
        if !finite.is_empty() {
            let width = if hi > lo {
                (hi - lo) / HISTOGRAM_BINS as f64
            } else {
                1.0
            };
            for &v in &finite {
                let bin = (((v - lo) / width) as usize).min(HISTOGRAM_BINS - 1);
                histogram[bin] += 1;
            }
        }
        TensorStats {
            histogram,
            count: values.len(),
            min: values
                .iter()
                .cloned()
                .filter(|v| !v.is_nan())
                .fold(f32::INFINITY, f32::min),
            max: values
                .iter()
                .cloned()
                .filter(|v| !v.is_nan())
                .fold(f32::NEG_INFINITY, f32::max),
            mean,
            std: var.sqrt(),
            zeros: values.iter().filter(|&&v| v == 0.0).count() as f64 / values.len().max(1) as f64,
            nan: values.iter().filter(|v| v.is_nan()).count(),
            inf: values.iter().filter(|v| v.is_infinite()).count(),
        }
    }
}

/// What happened to one tensor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TensorStatus {
    /// In the model and in the file, same shape, the model now holds the file's values.
    Applied,
    /// In the model and in the file with the same shape, but the model does not hold the file's
    /// values (the load skipped it).
    NotLoaded,
    /// In the model, not in the file.
    Missing,
    /// In the file, not in the model.
    Unused,
    /// In both, with different shapes.
    Mismatched {
        model_shape: Vec<usize>,
        file_shape: Vec<usize>,
    },
    /// Left out of the import on purpose (a new head in transfer learning).
    Excluded,
}

/// The proof for one tensor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TensorCheck {
    pub name: String,
    pub status: TensorStatus,
    pub shape: Vec<usize>,
    /// Largest |model - file| (applied or not loaded).
    pub max_abs_diff: Option<f32>,
    /// The model's values equal those of a freshly initialised model (while the file's differ,
    /// or the file has none).
    pub at_init: bool,
    /// Statistics of the model's values (of the file's, for an unused tensor).
    pub stats: TensorStats,
}

/// Tensor-by-tensor proof of an import.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportProof {
    pub tensors: Vec<TensorCheck>,
    pub tensors_in_model: usize,
    pub tensors_in_file: usize,
    pub applied: usize,
    pub not_loaded: usize,
    pub missing: usize,
    pub unused: usize,
    pub mismatched: usize,
    pub excluded: usize,
    pub at_init: usize,
    /// Largest |model - file| over the applied tensors.
    pub max_abs_diff: f32,
}

/// Compares `loaded` (after the import), `fresh` (initialised as `loaded` was before the import)
/// and the file's tensors, tensor by tensor. `model` and `file` come from [`read_model`] and
/// [`read_file`] in the same format.
///
/// Tensors whose name starts with one of `excluded` (layer paths such as `ip2`) were left out on
/// purpose: they are reported as [`TensorStatus::Excluded`] and raise no finding.
pub fn prove(
    loaded: &BTreeMap<String, Weights>,
    fresh: &BTreeMap<String, Weights>,
    file: &BTreeMap<String, Weights>,
    excluded: &[String],
) -> ImportProof {
    let mut tensors = Vec::new();
    let max_diff = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| if x == y { 0.0 } else { (x - y).abs() })
            .fold(0f32, |m, d| if d.is_nan() { f32::NAN } else { m.max(d) })
    };
    for (name, model) in loaded {
        let init = fresh.get(name).is_some_and(|f| f.values == model.values);
        let is_excluded = excluded
            .iter()
            .any(|e| name == e || name.starts_with(&format!("{e}.")));
        let (status, diff) = match file.get(name) {
            _ if is_excluded => (TensorStatus::Excluded, None),
            None => (TensorStatus::Missing, None),
            Some(f) if f.shape != model.shape => (
                TensorStatus::Mismatched {
                    model_shape: model.shape.clone(),
                    file_shape: f.shape.clone(),
                },
                None,
            ),
            Some(f) => {
                let d = max_diff(&model.values, &f.values);
                (
                    if d == 0.0 {
                        TensorStatus::Applied
                    } else {
                        TensorStatus::NotLoaded
                    },
                    Some(d),
                )
            }
        };
        let file_differs_from_init = file
            .get(name)
            .is_none_or(|f| fresh.get(name).is_none_or(|i| i.values != f.values));
        tensors.push(TensorCheck {
            name: name.clone(),
            status,
            shape: model.shape.clone(),
            max_abs_diff: diff,
            at_init: init && file_differs_from_init && !is_excluded,
            stats: TensorStats::of(&model.values),
        });
    }
    for (name, f) in file {
        let is_excluded = excluded
            .iter()
            .any(|e| name == e || name.starts_with(&format!("{e}.")));
        if !loaded.contains_key(name) && !is_excluded {
            tensors.push(TensorCheck {
                name: name.clone(),
                status: TensorStatus::Unused,
                shape: f.shape.clone(),
                max_abs_diff: None,
                at_init: false,
                stats: TensorStats::of(&f.values),
            });
        }
    }
    let count = |p: fn(&TensorStatus) -> bool| tensors.iter().filter(|t| p(&t.status)).count();
    ImportProof {
        tensors_in_model: loaded.len(),
        tensors_in_file: file.len(),
        applied: count(|s| *s == TensorStatus::Applied),
        not_loaded: count(|s| *s == TensorStatus::NotLoaded),
        missing: count(|s| *s == TensorStatus::Missing),
        unused: count(|s| *s == TensorStatus::Unused),
        mismatched: count(|s| matches!(s, TensorStatus::Mismatched { .. })),
        excluded: count(|s| *s == TensorStatus::Excluded),
        at_init: tensors.iter().filter(|t| t.at_init).count(),
        max_abs_diff: tensors
            .iter()
            .filter(|t| t.status == TensorStatus::Applied)
            .filter_map(|t| t.max_abs_diff)
            .fold(0f32, f32::max),
        tensors,
    }
}

/// The layer a tensor belongs to: its path without the last component (`layer1.0.conv1`).
pub fn layer_of(name: &str) -> &str {
    name.rsplit_once('.').map_or(name, |(layer, _)| layer)
}

impl ImportProof {
    /// Findings: a Fail for every missing, mismatched or not-loaded tensor and every tensor left
    /// at its initial values (grouped by layer, the layer named as subject); a Warn for unused
    /// file tensors (one Fail when *every* file tensor went unused: the keys do not match at all);
    /// a Pass when everything landed.
    pub fn findings(&self) -> Vec<Finding> {
        let mut findings = Vec::new();
        let mut by_layer: BTreeMap<(String, &'static str), Vec<&TensorCheck>> = BTreeMap::new();
        for t in &self.tensors {
            let check = match &t.status {
                TensorStatus::Missing => "missing",
                TensorStatus::Mismatched { .. } => "shape_mismatch",
                TensorStatus::NotLoaded => "not_loaded",
                TensorStatus::Unused => "unused",
                TensorStatus::Applied if t.at_init => "at_init",
                TensorStatus::Applied | TensorStatus::Excluded => continue,
            };
            by_layer
                .entry((layer_of(&t.name).to_string(), check))
                .or_default()
                .push(t);
        }
        if self.tensors_in_file > 0 && self.unused == self.tensors_in_file {
            findings.push(finding(
                "unused",
                Verdict::Fail,
                "every tensor in the file",
                self.unused as f64,
                0.0,
                format!(
                    "none of the file's {} tensors matches a parameter of the model: the keys differ (a prefix such as `module.`?)",
                    self.tensors_in_file
                ),
                "map the file's keys onto the model's parameter paths (key remapping, top-level key)",
            ));
            by_layer.retain(|(_, check), _| *check != "unused");
        }
        for ((layer, check), tensors) in by_layer {
            let names: Vec<&str> = tensors.iter().map(|t| t.name.as_str()).collect();
            let (verdict, message, remedy) = match check {
                "missing" => (
                    Verdict::Fail,
                    format!(
                        "{layer}: {} not in the file; it keeps its initial values",
                        names.join(", ")
                    ),
                    "add the layer's tensors to the file, or exclude the layer on purpose",
                ),
                "shape_mismatch" => {
                    let shapes: Vec<String> = tensors
                        .iter()
                        .map(|t| match &t.status {
                            TensorStatus::Mismatched {
                                model_shape,
                                file_shape,
                            } => format!("{}: model {model_shape:?}, file {file_shape:?}", t.name),
                            _ => String::new(),
                        })
                        .collect();
                    (
                        Verdict::Fail,
                        format!("{layer}: shapes differ ({})", shapes.join("; ")),
                        "build the layer with the file's shape, or re-initialise it on purpose (a new head)",
                    )
                }
                "not_loaded" => (
                    Verdict::Fail,
                    format!(
                        "{layer}: {} in the file but the model does not hold the file's values",
                        names.join(", ")
                    ),
                    "check the load's filters: the layer was skipped",
                ),
                "at_init" => (
                    Verdict::Fail,
                    format!(
                        "{layer}: {} still hold their initial values",
                        names.join(", ")
                    ),
                    "the layer was not loaded; check the load's filters and key mapping",
                ),
                _ => (
                    Verdict::Warn,
                    format!(
                        "{layer}: {} in the file match no parameter of the model",
                        names.join(", ")
                    ),
                    "map the keys, or drop them from the file",
                ),
            };
            findings.push(finding(
                check,
                verdict,
                &layer,
                tensors.len() as f64,
                0.0,
                message,
                remedy,
            ));
        }
        if findings.is_empty() {
            findings.push(finding(
                "import",
                Verdict::Pass,
                "all tensors",
                self.applied as f64,
                self.tensors_in_model as f64,
                if self.excluded == 0 {
                    format!(
                        "all {} tensors of the model hold the file's values (largest difference {})",
                        self.tensors_in_model, self.max_abs_diff
                    )
                } else {
                    format!(
                        "{} tensors hold the file's values (largest difference {}); {} left out on purpose",
                        self.applied, self.max_abs_diff, self.excluded
                    )
                },
                "",
            ));
        }
        findings
    }
}

fn finding(
    check: &str,
    verdict: Verdict,
    subject: &str,
    measured: f64,
    threshold: f64,
    message: String,
    remedy: &str,
) -> Finding {
    Finding {
        check: check.into(),
        verdict,
        subject: subject.into(),
        measured,
        threshold,
        message,
        remedy: remedy.into(),
    }
}

/// Relative change of every tensor between two weight sets: `|b - a| / |a|` (L2), for tensors in
/// both with the same shape. A layer that did not move (frozen by mistake) shows 0.
pub fn relative_change(
    a: &BTreeMap<String, Weights>,
    b: &BTreeMap<String, Weights>,
) -> BTreeMap<String, f64> {
    a.iter()
        .filter_map(|(name, wa)| {
            let wb = b.get(name).filter(|wb| wb.shape == wa.shape)?;
            let num: f64 = wa
                .values
                .iter()
                .zip(&wb.values)
                .map(|(x, y)| ((y - x) as f64).powi(2))
                .sum();
            let den: f64 = wa.values.iter().map(|&x| (x as f64).powi(2)).sum();
            Some((name.clone(), num.sqrt() / den.sqrt().max(1e-12)))
        })
        .collect()
}

/// Puts `from`'s values of every tensor under `layer` (a module path prefix) into `model`: the
/// `skip-load` fault, a load that left that layer at its initial values. Returns how many
/// tensors were restored.
pub fn restore_layer<M: Module>(model: &mut M, from: &M, layer: &str) -> Result<usize, String> {
    let pattern = format!("^{}\\.", layer.replace('.', "\\."));
    let mut out = BurnpackStore::from_bytes(None).with_regex(&pattern);
    from.save_into(&mut out).map_err(|e| format!("{e:?}"))?;
    let bytes = out.get_bytes().map_err(|e| format!("{e:?}"))?;
    let mut back = BurnpackStore::from_bytes(Some(bytes)).allow_partial(true);
    let result = model.load_from(&mut back).map_err(|e| format!("{e:?}"))?;
    if result.applied.is_empty() {
        return Err(format!("no tensor of the model lies under `{layer}`"));
    }
    Ok(result.applied.len())
}

/// The step's report from an import proof: the metrics the checklist carries
/// (`tensors_in_model`, `tensors_in_file`, `tensors_applied`, `tensors_missing`, `tensors_unused`,
/// `tensors_mismatched`, `tensors_at_init`, `max_abs_diff`, and `accuracy` when given), the
/// findings, and the per-tensor table in `details`.
pub fn step_report(proof: &ImportProof, accuracy: Option<f64>) -> model_core::StepReport {
    let mut report = model_core::StepReport::new(model_core::Step::Weights);
    report.metric("tensors_in_model", proof.tensors_in_model as f64);
    report.metric("tensors_in_file", proof.tensors_in_file as f64);
    report.metric("tensors_applied", proof.applied as f64);
    report.metric("tensors_missing", proof.missing as f64);
    report.metric("tensors_unused", proof.unused as f64);
    report.metric("tensors_mismatched", proof.mismatched as f64);
    report.metric("tensors_not_loaded", proof.not_loaded as f64);
    report.metric("tensors_excluded", proof.excluded as f64);
    report.metric("tensors_at_init", proof.at_init as f64);
    report.metric("max_abs_diff", proof.max_abs_diff as f64);
    if let Some(accuracy) = accuracy {
        report.metric("accuracy", accuracy);
    }
    for finding in proof.findings() {
        report.push(finding);
    }
    report.details = serde_json::json!({ "tensors": proof.tensors });
    report
}
