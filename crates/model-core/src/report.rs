//! The checklist's shared report vocabulary: verdicts, findings, step reports, the run report,
//! and atomic writing.
//!
//! Every step crate speaks these types, so a user calling one crate alone gets the same report as
//! `cargo xtask checklist`. The JSON shape is a stable contract (`schema_version` 1): keys may be
//! added, never renamed. Non-finite numbers (a run that hit NaN) are written as `null` and read
//! back as NaN, so such a run still writes what it found.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

/// The version of the `report.json` shape.
pub const SCHEMA_VERSION: u32 = 1;

/// The outcome of a check, a step or a run; ordered from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Warn,
    Fail,
}

impl Verdict {
    /// The worst of several verdicts; `Pass` for none.
    pub fn worst(verdicts: impl IntoIterator<Item = Verdict>) -> Verdict {
        verdicts.into_iter().max().unwrap_or(Verdict::Pass)
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Warn => "warn",
            Verdict::Fail => "fail",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The five steps of the checklist, in checklist order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Step {
    Data,
    Weights,
    Timings,
    Gradients,
    Results,
}

impl Step {
    /// Every step, in checklist order.
    pub const ALL: [Step; 5] = [
        Step::Data,
        Step::Weights,
        Step::Timings,
        Step::Gradients,
        Step::Results,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Step::Data => "data",
            Step::Weights => "weights",
            Step::Timings => "timings",
            Step::Gradients => "gradients",
            Step::Results => "results",
        }
    }

    /// What the step checks, in a few words.
    pub fn title(&self) -> &'static str {
        match self {
            Step::Data => "check the data",
            Step::Weights => "check the weights",
            Step::Timings => "check the timings",
            Step::Gradients => "check the gradients",
            Step::Results => "understand the results",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Step {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Step::ALL
            .into_iter()
            .find(|step| step.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown step `{s}`; expected one of data, weights, timings, gradients, results"
                )
            })
    }
}

/// One check's outcome, with the evidence that produced it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// The check's name (`data_layer_share`, `first_nan` ...).
    pub check: String,
    pub verdict: Verdict,
    /// What the finding is about: a layer, blob, tensor or label.
    pub subject: String,
    /// The measured value (`null` when non-finite).
    #[serde(with = "finite_or_null")]
    pub measured: f64,
    /// The threshold it was held against (`null` when none or non-finite).
    #[serde(with = "finite_or_null")]
    pub threshold: f64,
    pub message: String,
    /// What to do about it; empty when nothing needs doing.
    pub remedy: String,
}

/// One step's report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepReport {
    pub step: Step,
    /// The worst verdict of the findings.
    pub verdict: Verdict,
    pub seconds: f64,
    /// Named figures (each step's issue names the ones it must carry); non-finite as `null`.
    #[serde(with = "finite_map")]
    pub metrics: BTreeMap<String, f64>,
    pub findings: Vec<Finding>,
    /// Step-specific tables (per-layer rows ...).
    pub details: serde_json::Value,
    /// Files written by the step, relative to the report folder.
    pub artifacts: Vec<String>,
}

impl StepReport {
    /// An empty report of `step` (verdict pass until findings say otherwise).
    pub fn new(step: Step) -> Self {
        StepReport {
            step,
            verdict: Verdict::Pass,
            seconds: 0.0,
            metrics: BTreeMap::new(),
            findings: Vec::new(),
            details: serde_json::Value::Object(Default::default()),
            artifacts: Vec::new(),
        }
    }

    /// Adds a finding; the step's verdict becomes the worst seen.
    pub fn push(&mut self, finding: Finding) {
        self.verdict = self.verdict.max(finding.verdict);
        self.findings.push(finding);
    }

    /// Records a metric.
    pub fn metric(&mut self, name: impl Into<String>, value: f64) {
        self.metrics.insert(name.into(), value);
    }
}

/// The tool that wrote a report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolInfo {
    pub name: String,
    pub version: String,
}

/// What was run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    pub dataset: String,
    /// The model (`null` until a step trains or loads one).
    pub model: Option<String>,
    pub device: String,
    pub seed: u64,
    /// Faults planted with `--inject`.
    pub injected: Vec<String>,
    pub seconds: f64,
    /// The weights file imported into the model, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<String>,
    /// Training iterations the steps that train may run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iterations: Option<usize>,
    /// Why the run did not complete (a partial report); absent for a complete run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interrupted: Option<String>,
}

/// The whole `report.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub schema_version: u32,
    pub tool: ToolInfo,
    pub run: RunInfo,
    /// The worst step verdict (`pass` when no step ran).
    pub verdict: Verdict,
    pub steps: Vec<StepReport>,
    /// The datasets the run loaded.
    #[serde(default)]
    pub datasets: Vec<crate::dataset::DatasetSummary>,
}

impl Report {
    /// A report of `run` with no steps yet.
    pub fn new(tool: ToolInfo, run: RunInfo) -> Self {
        Report {
            schema_version: SCHEMA_VERSION,
            tool,
            run,
            verdict: Verdict::Pass,
            steps: Vec::new(),
            datasets: Vec::new(),
        }
    }

    /// Adds a step's report; the run's verdict becomes the worst seen.
    pub fn push(&mut self, step: StepReport) {
        self.verdict = self.verdict.max(step.verdict);
        self.steps.push(step);
    }

    /// Pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report always serialises")
    }

    /// Writes the report as JSON to `path` atomically.
    pub fn write(&self, path: &Path) -> io::Result<()> {
        let mut json = self.to_json();
        json.push('\n');
        write_atomic(path, json.as_bytes())
    }
}

/// Writes `bytes` to `path` atomically: into a temporary file in the same folder, flushed to
/// disk, then renamed over `path`. A failure at any point leaves an existing `path` untouched
/// and removes the temporary file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".partial")
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    // A temporary file is private (0600); a report is an ordinary file (0644 before umask).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))?;
    }
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

mod finite_or_null {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            s.serialize_f64(*v)
        } else {
            s.serialize_none()
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
    }
}

mod finite_map {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(m: &BTreeMap<String, f64>, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(m.iter().map(|(k, v)| (k, v.is_finite().then_some(*v))))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, f64>, D::Error> {
        let m = BTreeMap::<String, Option<f64>>::deserialize(d)?;
        Ok(m.into_iter()
            .map(|(k, v)| (k, v.unwrap_or(f64::NAN)))
            .collect())
    }
}
