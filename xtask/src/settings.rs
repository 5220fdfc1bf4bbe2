//! Every threshold and option of the checklist, with documented defaults: what `--config FILE`
//! reads (TOML) and `--print-config` prints.
//!
//! The command line wins over the file, the file over the defaults. Every key is documented in
//! [`DOCS`]; a test holds that no key goes without its line, so `--print-config` is the complete
//! reference.

use std::path::{Path, PathBuf};

use grad_monitor::MonitorConfig;
use serde::{Deserialize, Serialize};

/// The file's contents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub run: RunSettings,
    pub train: TrainSettings,
    pub data: DataSettings,
    pub timings: TimingsSettings,
    pub gradients: MonitorConfig,
    pub results: ResultsSettings,
    pub baseline: BaselineSettings,
}

/// The command line's options, in the file; a flag given on the command line wins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct RunSettings {
    pub steps: Option<Vec<String>>,
    pub dataset: Option<String>,
    pub out: Option<PathBuf>,
    pub seed: Option<u64>,
    pub inject: Option<Vec<String>>,
    pub loading: Option<String>,
    pub model: Option<String>,
    pub weights: Option<PathBuf>,
    pub device: Option<String>,
    pub iterations: Option<u64>,
    pub normalization: Option<String>,
    pub eval_samples: Option<usize>,
    pub tsne_points: Option<usize>,
    pub baseline: Option<PathBuf>,
}

/// The shared training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainSettings {
    pub lr: f64,
    pub momentum: f64,
    pub batch_size: usize,
}

impl Default for TrainSettings {
    fn default() -> Self {
        TrainSettings {
            lr: 0.01,
            momentum: 0.9,
            batch_size: 64,
        }
    }
}

/// Step 1, the data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataSettings {
    pub tsne_points: usize,
    pub pca_dims: usize,
    pub perplexity: f64,
    pub tsne_iterations: usize,
    pub knn_k: usize,
    pub pass_accuracy: f64,
    pub fail_lift: f64,
    pub memory_budget_mib: usize,
}

impl Default for DataSettings {
    fn default() -> Self {
        DataSettings {
            tsne_points: 5_000,
            pca_dims: 50,
            perplexity: 30.0,
            tsne_iterations: 1_000,
            knn_k: 10,
            pass_accuracy: 0.8,
            fail_lift: 0.1,
            memory_budget_mib: 4_096,
        }
    }
}

/// Step 3, the timings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TimingsSettings {
    pub data_warn_share: f64,
    pub data_fail_share: f64,
    pub bottleneck_warn_share: f64,
    pub bottleneck_warn_ratio: f64,
    pub strategy_batches: usize,
    pub slow_layer_seconds: f64,
}

impl Default for TimingsSettings {
    fn default() -> Self {
        let profile = profiler::ProfileConfig::default();
        TimingsSettings {
            data_warn_share: profile.data_warn_share,
            data_fail_share: profile.data_fail_share,
            bottleneck_warn_share: profile.bottleneck_warn_share,
            bottleneck_warn_ratio: profile.bottleneck_warn_ratio,
            strategy_batches: 20,
            slow_layer_seconds: 0.1,
        }
    }
}

/// Step 5, the results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResultsSettings {
    pub window: usize,
    pub stride: usize,
    pub border: usize,
    pub inside_share: f64,
    pub memory_budget_mib: usize,
    pub lowered: bool,
    pub incremental: bool,
}

impl Default for ResultsSettings {
    fn default() -> Self {
        ResultsSettings {
            window: 0,
            stride: 2,
            border: 4,
            inside_share: 0.5,
            memory_budget_mib: 512,
            lowered: true,
            incremental: true,
        }
    }
}

/// `--baseline`: what counts as a regression against an earlier report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BaselineSettings {
    pub accuracy_drop: f64,
    pub layer_time_increase: f64,
    pub layer_time_min_ms: f64,
}

impl Default for BaselineSettings {
    fn default() -> Self {
        BaselineSettings {
            accuracy_drop: 0.01,
            layer_time_increase: 0.5,
            layer_time_min_ms: 1.0,
        }
    }
}

/// One line of documentation per key, `section.key`.
pub const DOCS: &[(&str, &str)] = &[
    (
        "run.steps",
        "Steps to run: data, weights, timings, gradients, results (default: all).",
    ),
    (
        "run.dataset",
        "mnist, cifar10, or a path (IDX folder, CIFAR-10 binaries, image folder).",
    ),
    ("run.out", "The report folder (default: report)."),
    ("run.seed", "Seed of every random choice (default: 42)."),
    (
        "run.inject",
        "Faults to plant, NAME or NAME=VALUE (see --help).",
    ),
    (
        "run.loading",
        "load-all, on-demand-no-cache or on-demand-cached.",
    ),
    (
        "run.model",
        "lenet, resnet20 or alexnet (default: by the dataset).",
    ),
    (
        "run.weights",
        "PyTorch, burnpack or SafeTensors weights to import.",
    ),
    ("run.device", "flex, wgpu, vulkan or cuda."),
    (
        "run.iterations",
        "Iterations of the shared training run (default: 200).",
    ),
    (
        "run.normalization",
        "auto, mnist, cifar10, imagenet or measured.",
    ),
    (
        "run.eval_samples",
        "Evaluate on a stratified sample of this many held-out images.",
    ),
    ("run.tsne_points", "Overrides data.tsne_points."),
    (
        "run.baseline",
        "An earlier report.json to compare with; regressions fail.",
    ),
    ("train.lr", "Base learning rate of the shared run (SGD)."),
    ("train.momentum", "SGD momentum."),
    ("train.batch_size", "Images per iteration."),
    (
        "data.tsne_points",
        "Samples mapped by t-SNE (a stratified sample; the whole split when larger).",
    ),
    (
        "data.pca_dims",
        "PCA dimensions before t-SNE and for the PCA-space k-NN accuracy.",
    ),
    ("data.perplexity", "t-SNE perplexity."),
    (
        "data.tsne_iterations",
        "t-SNE iterations, early exaggeration included.",
    ),
    ("data.knn_k", "Neighbours of the k-NN label accuracy."),
    (
        "data.pass_accuracy",
        "k-NN accuracy in the map at or above which the labels separate (pass).",
    ),
    (
        "data.fail_lift",
        "(accuracy - chance) / (1 - chance) below this: the labels carry no information (fail).",
    ),
    (
        "data.memory_budget_mib",
        "t-SNE refuses a size whose estimate exceeds this.",
    ),
    (
        "timings.data_warn_share",
        "Data layer share of the iteration that warns (TensorFlow's 5%).",
    ),
    ("timings.data_fail_share", "... and fails (input-bound)."),
    (
        "timings.bottleneck_warn_share",
        "One layer taking this share of the iteration or more warns.",
    ),
    (
        "timings.bottleneck_warn_ratio",
        "... as does one taking half that share and this many times the runner-up's.",
    ),
    (
        "timings.strategy_batches",
        "Batches read per loading strategy in the comparison.",
    ),
    (
        "timings.slow_layer_seconds",
        "Forward seconds the slow-layer fault adds.",
    ),
    ("gradients.every", "Watch every k-th iteration."),
    (
        "gradients.stop_at_nonfinite",
        "Stop the run at the first NaN or Inf.",
    ),
    (
        "gradients.explode_growth",
        "Growth of a gradient range over the run that counts as exploding.",
    ),
    (
        "gradients.imbalance_ratio",
        "Update-to-value ratio above which a parameter is imbalanced.",
    ),
    (
        "gradients.imbalance_vs_weight",
        "A bias whose update ratio is this many times its weight's is imbalanced.",
    ),
    (
        "gradients.vanish_ratio",
        "Update-to-value ratio below which a parameter is vanishing.",
    ),
    (
        "gradients.target_ratio",
        "The update ratio a remedy aims at.",
    ),
    (
        "gradients.converged_loss_fraction",
        "The loss has converged below this fraction of the first loss.",
    ),
    (
        "results.window",
        "Occlusion window side, pixels (0: by the image, 6 for 28x28, a quarter of the smaller side otherwise).",
    ),
    ("results.stride", "Occlusion stride, pixels."),
    (
        "results.border",
        "Border band (pixels) outside the object where no digit bounding box is known.",
    ),
    (
        "results.inside_share",
        "Share of the impact mass inside the object below which an image warns.",
    ),
    (
        "results.memory_budget_mib",
        "Memory the occlusion batches may take.",
    ),
    (
        "results.lowered",
        "On the CPU, run the maps through the model lowered for batched inference (false: Burn's own forward).",
    ),
    (
        "results.incremental",
        "With the lowered model, recompute of each occluded copy only what its window reaches (false: every copy whole; the same maps).",
    ),
    (
        "baseline.accuracy_drop",
        "A held-out accuracy lower than the baseline's by more than this fails.",
    ),
    (
        "baseline.layer_time_increase",
        "A layer slower than in the baseline by more than this share fails.",
    ),
    (
        "baseline.layer_time_min_ms",
        "Layers faster than this in both runs are not compared.",
    ),
];

/// Reads a settings file; an unknown key or a value of the wrong type is an error naming it.
pub fn read(path: &Path) -> Result<Settings, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: cannot read the config: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("{}: {}", path.display(), e.to_string().trim()))
}

/// Applies one `--set SECTION.KEY=VALUE` to `settings`. VALUE is read as TOML (`8`, `0.5`,
/// `true`, `"text"`, `[1, 2]`), a bare word as a string; an unknown key or a value of the wrong
/// type is an error naming it.
pub fn set(settings: &mut Settings, assignment: &str) -> Result<(), String> {
    let bad = |why: String| format!("--set {assignment}: {why}");
    let (path, value) = assignment
        .split_once('=')
        .ok_or_else(|| bad("expected SECTION.KEY=VALUE".into()))?;
    let (section, key) = path
        .trim()
        .split_once('.')
        .ok_or_else(|| bad("expected SECTION.KEY=VALUE".into()))?;
    if !DOCS.iter().any(|(k, _)| *k == path.trim()) {
        return Err(bad(format!(
            "no such setting `{}` (cargo xtask checklist --print-config lists them)",
            path.trim()
        )));
    }
    let value = value.trim();
    let parsed: toml::Value = toml::from_str::<toml::Table>(&format!("v = {value}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.to_string()));
    let mut table = toml::Table::try_from(&*settings).map_err(|e| bad(e.to_string()))?;
    let section_table = table
        .entry(section.to_string())
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    let Some(section_table) = section_table.as_table_mut() else {
        return Err(bad(format!("`{section}` is not a section")));
    };
    section_table.insert(key.to_string(), parsed);
    *settings = toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| bad(e.to_string().trim().to_string()))?;
    Ok(())
}

/// The defaults as a TOML file, every key preceded by its documentation.
pub fn print_defaults() -> String {
    let text = toml::to_string(&Settings::default()).expect("settings serialise");
    let mut out = String::from(
        "# nn-checklist settings (cargo xtask checklist --config FILE).\n\
         # Every key is optional; the command line wins over this file.\n",
    );
    let mut section = String::new();
    for line in text.lines() {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
            if section == "run" {
                // The [run] keys have no defaults in the file: list them commented out.
                out.push_str("\n[run]\n");
                for (key, doc) in DOCS.iter().filter(|(k, _)| k.starts_with("run.")) {
                    out.push_str(&format!("# {doc}\n# {} = ...\n", &key[4..]));
                }
                continue;
            }
            out.push('\n');
            out.push_str(line);
            out.push('\n');
            continue;
        }
        if let Some((key, _)) = line.split_once(" = ") {
            let full = format!("{section}.{key}");
            if let Some((_, doc)) = DOCS.iter().find(|(k, _)| *k == full) {
                out.push_str(&format!("# {doc}\n"));
            }
        }
        if !line.is_empty() {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_default_key_is_documented_and_the_printed_file_reads_back() {
        let printed = print_defaults();
        let text = toml::to_string(&Settings::default()).unwrap();
        let mut section = String::new();
        for line in text.lines() {
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = name.to_string();
            } else if let Some((key, _)) = line.split_once(" = ") {
                let full = format!("{section}.{key}");
                assert!(
                    DOCS.iter().any(|(k, _)| *k == full),
                    "{full} has no doc line"
                );
            }
        }
        let back: Settings = toml::from_str(&printed).unwrap();
        assert_eq!(back, Settings::default());
    }

    #[test]
    fn set_changes_one_key_and_refuses_unknown_keys_and_wrong_types() {
        let mut settings = Settings::default();
        set(&mut settings, "results.window=8").unwrap();
        set(&mut settings, "gradients.explode_growth = 1e3").unwrap();
        set(&mut settings, "run.dataset=cifar10").unwrap();
        assert_eq!(settings.results.window, 8);
        assert_eq!(settings.gradients.explode_growth, 1000.0);
        assert_eq!(settings.run.dataset.as_deref(), Some("cifar10"));
        let before = settings.clone();
        assert!(
            set(&mut settings, "results.windw=8")
                .unwrap_err()
                .contains("results.windw")
        );
        assert!(
            set(&mut settings, "results.window=big")
                .unwrap_err()
                .contains("window")
        );
        assert!(set(&mut settings, "window").is_err());
        assert_eq!(settings, before);
    }

    #[test]
    fn an_unknown_key_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[gradients]\nexplode_grwoth = 3\n").unwrap();
        let err = read(&path).unwrap_err();
        assert!(err.contains("explode_grwoth"), "{err}");
        std::fs::write(&path, "[data]\ntsne_points = \"many\"\n").unwrap();
        let err = read(&path).unwrap_err();
        assert!(err.contains("tsne_points"), "{err}");
    }
}
