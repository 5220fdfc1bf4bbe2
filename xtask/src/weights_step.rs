//! The checklist's step 2, `weights`: import weights into the chosen model and prove it with
//! `weight-check`, tensor by tensor; plant the step's faults on request.
//!
//! With `--weights FILE` the file is imported into the run's model (initialised with the run's
//! seed) and compared with a fresh model of the same seed and with the file read on its own.
//! Without, the shared training run's model is saved as burnpack, and that file is imported
//! into a fresh model of another seed, so a tensor left at its initial values cannot pass for a
//! loaded one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::prelude::*;
use burn::store::{BurnpackStore, ModuleSnapshot};
use model_core::models::{PytorchImport, import_pytorch};
use model_core::train::evaluate;
use model_core::{Batcher, Dataset, Normalization, StepReport};
use weight_check::{
    WeightFormat, Weights, prove, read_file, read_model, restore_layer, step_report,
};

use crate::checklist::{RunError, StepContext, fault_parts, write_artifact};
use crate::model::{self, RunModel};
use crate::with_model;

/// The faults of this step, from `--inject`.
#[derive(Debug, Default, Clone)]
pub struct Faults {
    /// `skip-load=LAYER`: the load leaves LAYER at its initial values.
    pub skip_load: Option<String>,
    /// `drop-tensors=LAYER`: the file lacks LAYER's tensors.
    pub drop_tensors: Option<String>,
    /// `key-prefix=PFX`: every key in the file carries an extra prefix.
    pub key_prefix: Option<String>,
}

impl Faults {
    pub fn from_injected(injected: &[String]) -> Result<Faults, RunError> {
        let mut faults = Faults::default();
        for spec in injected {
            let (name, value) = fault_parts(spec);
            let slot = match name {
                "skip-load" => &mut faults.skip_load,
                "drop-tensors" => &mut faults.drop_tensors,
                "key-prefix" => &mut faults.key_prefix,
                _ => continue,
            };
            match value.filter(|v| !v.is_empty()) {
                Some(v) => *slot = Some(v.to_string()),
                None => {
                    return Err(RunError::Usage(format!(
                        "--inject {name} needs a value: {name}=VALUE"
                    )));
                }
            }
        }
        Ok(faults)
    }

    fn layers(&self) -> impl Iterator<Item = &String> {
        self.skip_load.iter().chain(&self.drop_tensors)
    }
}

/// What the proof compares, made ready by [`prepare`].
pub struct Prepared {
    pub file_path: PathBuf,
    pub format: WeightFormat,
    /// The file's tensors as the load sees them (faults applied).
    pub file: BTreeMap<String, Weights>,
    /// The model as it was before the import.
    pub fresh: RunModel,
    /// The model after the import (the run's model, with `--weights`).
    pub loaded: RunModel,
}

/// Imports `--weights` (or a freshly trained checkpoint) into a model, planting `faults`.
pub fn prepare(cx: &StepContext<'_>, faults: &Faults) -> Result<Prepared, RunError> {
    let (kind, run_model, weights, train, device, seed, out) = (
        cx.kind,
        cx.run_model,
        cx.args.weights.as_deref(),
        cx.train,
        &cx.device,
        cx.args.seed,
        cx.out,
    );
    let (file_path, format, student_seed) = match weights {
        Some(path) => {
            let format = if path
                .extension()
                .is_some_and(|e| e == "bpk" || e == "safetensors")
            {
                WeightFormat::for_path(path, PytorchImport::plain())
            } else {
                // A DataParallel checkpoint, or a plain state dict.
                let dp = PytorchImport::data_parallel_checkpoint();
                match read_file(path, &WeightFormat::Pytorch(dp.clone())) {
                    Ok(_) => WeightFormat::Pytorch(dp),
                    Err(_) => WeightFormat::Pytorch(PytorchImport::plain()),
                }
            };
            (path.to_path_buf(), format, seed)
        }
        None => {
            // The shared training run's model, saved: the file to import.
            let dir = out.join("weights");
            std::fs::create_dir_all(&dir).map_err(|source| RunError::Write {
                path: dir.clone(),
                source,
            })?;
            let path = dir.join("trained.bpk");
            let trained = &cx.training()?.model;
            // The staging folder is this run's own: a failed save leaves no previous file behind.
            with_model!(trained, m => m.clone().save_file(&path)).map_err(|e| RunError::Write {
                path: path.clone(),
                source: std::io::Error::other(format!("{e:?}")),
            })?;
            (path, WeightFormat::Burnpack, seed.wrapping_add(1))
        }
    };
    let fresh = model::build(kind, train, device, student_seed)?;
    // The run's model already holds the file after an ordinary `--weights` import; only the
    // round trip, or a load under a prefix, loads here, into a fresh model.
    let load_here = weights.is_none() || faults.key_prefix.is_some();
    let mut loaded = if load_here {
        fresh.clone()
    } else {
        run_model.clone()
    };
    let mut file = match &format {
        WeightFormat::Pytorch(import) => {
            let mut import = import.clone();
            if let Some(prefix) = &faults.key_prefix {
                match import.key_remapping.first_mut() {
                    Some((_, to)) => *to = format!("{prefix}{to}"),
                    None => import.key_remapping.push(("^".into(), prefix.clone())),
                }
                let import = import.clone().allow_partial(true);
                with_model!(&mut loaded, m => import_pytorch(m, &file_path, &import))
                    .map_err(|e| RunError::Usage(e.to_string()))?;
            }
            read_file(&file_path, &WeightFormat::Pytorch(import))
                .map_err(|e| RunError::Usage(e.to_string()))?
        }
        WeightFormat::Safetensors(import) => {
            let mut import = import.clone();
            if let Some(prefix) = &faults.key_prefix {
                import.key_remapping.push(("^".into(), prefix.clone()));
                let format = WeightFormat::Safetensors(import.clone());
                with_model!(&mut loaded, m => format.load_into(m, &file_path))
                    .map_err(|e| RunError::Usage(e.to_string()))?;
            }
            read_file(&file_path, &WeightFormat::Safetensors(import))
                .map_err(|e| RunError::Usage(e.to_string()))?
        }
        WeightFormat::Burnpack => {
            let mut store = BurnpackStore::from_file(&file_path).allow_partial(true);
            if let Some(prefix) = &faults.key_prefix {
                store = store.with_remap_pattern("^", prefix.clone());
            }
            if load_here {
                with_model!(&mut loaded, m => m.load_from(&mut store).map(|_| ()))
                    .map_err(|e| RunError::Usage(format!("{}: {e:?}", file_path.display())))?;
            }
            let mut file = read_file(&file_path, &WeightFormat::Burnpack)
                .map_err(|e| RunError::Usage(e.to_string()))?;
            if let Some(prefix) = &faults.key_prefix {
                file = file
                    .into_iter()
                    .map(|(k, v)| (format!("{prefix}{k}"), v))
                    .collect();
            }
            file
        }
    };
    for layer in faults.layers() {
        let restored = match (&mut loaded, &fresh) {
            (RunModel::LeNet(l), RunModel::LeNet(f)) => restore_layer(l, f, layer),
            (RunModel::ResNet20(l), RunModel::ResNet20(f)) => restore_layer(l, f, layer),
            (RunModel::AlexNet(l), RunModel::AlexNet(f)) => restore_layer(l, f, layer),
            _ => Err("models differ".into()),
        };
        restored.map_err(|e| RunError::Usage(format!("--inject: {e}")))?;
    }
    if let Some(layer) = &faults.drop_tensors {
        file.retain(|name, _| !name.starts_with(&format!("{layer}.")));
    }
    Ok(Prepared {
        file_path,
        format,
        file,
        fresh,
        loaded,
    })
}

/// Proves the import, evaluates the loaded model and draws its first convolution.
pub fn run(
    prepared: &Prepared,
    eval: Option<&Dataset>,
    normalization: &Normalization,
    device: &Device,
    out: &Path,
) -> Result<StepReport, RunError> {
    let model_view = with_model!(&prepared.loaded, m => read_model(m, &prepared.format));
    let fresh_view = with_model!(&prepared.fresh, m => read_model(m, &prepared.format));
    let proof = prove(&model_view, &fresh_view, &prepared.file, &[]);
    let accuracy = match eval {
        Some(dataset) => {
            let batcher = Batcher::new(100, 0, normalization.clone());
            let inference = device.clone().inner();
            let evaluation = with_model!(&prepared.loaded, m => evaluate(&m.valid(), dataset, &batcher, &inference))
                .map_err(|e| RunError::Usage(e.to_string()))?;
            Some(evaluation.accuracy)
        }
        None => None,
    };
    let mut report = step_report(&proof, accuracy);
    // How far each tensor moved from the model's initial values: a layer that did not move at
    // all stands out (0).
    report.details["relative_change_from_init"] =
        serde_json::json!(weight_check::relative_change(&fresh_view, &model_view));
    report.details["file"] = serde_json::json!(prepared.file_path.display().to_string());
    report.details["model"] = serde_json::json!(prepared.loaded.name());
    if let Some(dataset) = eval {
        report.details["accuracy_on"] =
            serde_json::json!({ "dataset": dataset.name(), "images": dataset.len() });
    }

    // Pictures: the first convolution's filters, and the last inner product as a heat map.
    // The first two convolutions: the first as RGB (or grey) tiles, the next as per-channel tiles.
    for (name, w) in model_view
        .iter()
        .filter(|(n, w)| n.ends_with(".weight") && w.shape.len() == 4)
        .take(2)
    {
        let shape = [w.shape[0], w.shape[1], w.shape[2], w.shape[3]];
        let scale = (96 / shape[3].max(1)).clamp(2, 12) as u32;
        let img = weight_check::conv_filter_grid(&w.values, shape, scale, 8);
        let rel = format!(
            "weights/{}_filters.png",
            name.trim_end_matches(".weight").replace('.', "_")
        );
        write_artifact(out, &mut report, &rel, &png(&img, &out.join(&rel))?)?;
    }
    if let Some((name, w)) = model_view
        .iter()
        .rev()
        .find(|(n, w)| n.ends_with(".weight") && w.shape.len() == 2)
    {
        let img = weight_check::heat_map(&w.values, w.shape[0], w.shape[1], 512);
        let img = image::imageops::resize(
            &img,
            (img.width() * 4).min(1024),
            (img.height() * 16).min(512),
            image::imageops::FilterType::Nearest,
        );
        let rel = format!(
            "weights/{}_heatmap.png",
            name.trim_end_matches(".weight").replace('.', "_")
        );
        write_artifact(out, &mut report, &rel, &png(&img, &out.join(&rel))?)?;
    }
    Ok(report)
}

/// `img` encoded as PNG, to be written at `path`.
fn png(img: &image::RgbImage, path: &Path) -> Result<Vec<u8>, RunError> {
    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )
    .map_err(|e| RunError::Write {
        path: path.to_path_buf(),
        source: std::io::Error::other(e),
    })?;
    Ok(bytes)
}
