//! Importing weights written by PyTorch into a model, by parameter name.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::store::{ModuleSnapshot, PytorchStore};
use serde::{Deserialize, Serialize};

/// How a PyTorch file's keys map onto a model's parameter paths.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PytorchImport {
    /// The dictionary inside the file that holds the tensors (`state_dict`), if any.
    pub top_level_key: Option<String>,
    /// Regular-expression rewrites of the file's keys, applied in order (`^module\.` to ``).
    pub key_remapping: Vec<(String, String)>,
    /// Accept a file that lacks some of the model's parameters (they keep their values).
    pub allow_partial: bool,
}

impl PytorchImport {
    /// Keys used as they are.
    pub fn plain() -> Self {
        PytorchImport {
            top_level_key: None,
            key_remapping: Vec::new(),
            allow_partial: false,
        }
    }

    /// A checkpoint saved as `{'state_dict': {'module.<path>': tensor}}` (DataParallel), as
    /// akamaster/pytorch_resnet_cifar10 publishes its ResNets.
    pub fn data_parallel_checkpoint() -> Self {
        PytorchImport {
            top_level_key: Some("state_dict".into()),
            key_remapping: vec![(r"^module\.".into(), String::new())],
            allow_partial: false,
        }
    }

    pub fn allow_partial(mut self, allow: bool) -> Self {
        self.allow_partial = allow;
        self
    }

    /// A burn-store reader of the file at `path` with this import's top-level key and key
    /// rewrites.
    pub fn store(&self, path: &Path) -> PytorchStore {
        let mut store = PytorchStore::from_file(path);
        if let Some(key) = &self.top_level_key {
            store = store.with_top_level_key(key.clone());
        }
        for (from, to) in &self.key_remapping {
            store = store.with_key_remapping(from, to.clone());
        }
        store
    }
}

/// What an import did, tensor by tensor.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportOutcome {
    /// Model parameter paths that received a tensor from the file.
    pub applied: Vec<String>,
    /// Model parameter paths the file has no tensor for.
    pub missing: Vec<String>,
    /// File keys (after remapping) that match no model parameter.
    pub unused: Vec<String>,
    /// Tensors that matched by name but could not be applied (shape or type mismatch).
    pub errors: Vec<String>,
}

impl ImportOutcome {
    /// Every parameter received a tensor, every tensor was used, nothing failed.
    pub fn is_complete(&self) -> bool {
        self.missing.is_empty()
            && self.unused.is_empty()
            && self.errors.is_empty()
            && !self.applied.is_empty()
    }
}

/// A weights file that could not be imported.
#[derive(Debug, thiserror::Error)]
#[error("{}: cannot import PyTorch weights: {reason}", path.display())]
pub struct ImportError {
    pub path: PathBuf,
    pub reason: String,
}

/// Loads the tensors of the PyTorch file at `path` into `model` by parameter name.
pub fn import_pytorch<M: Module>(
    model: &mut M,
    path: &Path,
    import: &PytorchImport,
) -> Result<ImportOutcome, ImportError> {
    let fail = |reason: String| ImportError {
        path: path.to_path_buf(),
        reason,
    };
    if !path.is_file() {
        return Err(fail("no such file".into()));
    }
    for (from, _) in &import.key_remapping {
        if let Err(e) = regex_check(from) {
            return Err(fail(format!("key remapping `{from}`: {e}")));
        }
    }
    let mut store = import.store(path).allow_partial(true).validate(true);
    let result = model
        .load_from(&mut store)
        .map_err(|e| fail(e.to_string()))?;
    let outcome = ImportOutcome {
        applied: result.applied.clone(),
        missing: result.missing.iter().map(|(p, _)| p.clone()).collect(),
        unused: result.unused.clone(),
        errors: result.errors.iter().map(|e| format!("{e:?}")).collect(),
    };
    if !import.allow_partial && !outcome.missing.is_empty() {
        return Err(fail(format!(
            "{} of the model's tensors are not in the file (first: {})",
            outcome.missing.len(),
            outcome.missing[0]
        )));
    }
    Ok(outcome)
}

/// Rejects patterns that `PytorchStore::with_key_remapping` would panic on.
fn regex_check(pattern: &str) -> Result<(), String> {
    burn::module::ParamGroup::from_regex(pattern)
        .map(|_| ())
        .map_err(|e| format!("{e:?}"))
}
