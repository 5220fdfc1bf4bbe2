//! `cargo xtask checklist` as a user runs it: exit statuses, one-line errors naming the file,
//! the report's shape, and a failed write that leaves the previous report intact.

use std::path::Path;
use std::process::{Command, Output};

fn xtask(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .output()
        .unwrap()
}

/// `cargo xtask checklist --out OUT ARGS... EXTRA...`.
fn checklist_in(out: &Path, args: &[&str], extra: &[&str]) -> Output {
    let mut all = vec!["checklist", "--out", out.to_str().unwrap()];
    all.extend_from_slice(args);
    all.extend_from_slice(extra);
    xtask(&all)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn assert_usage_error(o: &Output, needle: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(2), "stderr: {err}");
    assert!(err.contains(needle), "`{needle}` not in: {err}");
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
}

#[test]
fn the_default_run_loads_mnist_and_runs_every_built_step() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report");
    let o = xtask(&["checklist", "--out", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("mnist-train: 60000 samples"), "{stdout}");
    assert!(stdout.contains("verdict: pass"), "{stdout}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["schema_version"], 1);
    assert_eq!(report["run"]["dataset"], "mnist");
    assert_eq!(report["run"]["seed"], 42);
    assert_eq!(report["verdict"], "pass");
    let steps: Vec<&str> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        ["data", "weights", "timings", "gradients", "results"]
    );
    assert_eq!(
        report["datasets"][0]["label_counts"],
        serde_json::json!([5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949])
    );
    assert_eq!(report["datasets"][1]["samples"], 10_000);
    // The staging folder is gone once the run is published.
    assert!(!out.join("partial").exists());
    check_page_in_chromium(&out.join("index.html"), &steps);
}

/// Loads the report page in headless Chromium (Debian's package) and reads what its self-check
/// script wrote: every picture decoded, no script error, every step's section present. Without
/// Chromium the check is skipped, unless `NN_CHECKLIST_REQUIRE_CHROMIUM` is set (CI sets it).
fn check_page_in_chromium(page: &Path, steps: &[&str]) {
    let html = std::fs::read_to_string(page).unwrap();
    for step in steps {
        assert!(
            html.contains(&format!("data-step=\"{step}\"")),
            "no section for {step}"
        );
    }
    let chromium = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|c| {
            Command::new(c)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        });
    let Some(chromium) = chromium else {
        assert!(
            std::env::var_os("NN_CHECKLIST_REQUIRE_CHROMIUM").is_none(),
            "NN_CHECKLIST_REQUIRE_CHROMIUM is set but no chromium is installed"
        );
        eprintln!("chromium not installed: the page check in a browser is skipped");
        return;
    };
    let profile = tempfile::tempdir().unwrap();
    let o = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--allow-file-access-from-files",
            "--virtual-time-budget=20000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.canonicalize().unwrap().display()))
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "chromium failed: {}", stderr(&o));
    let pictures = dom
        .split("data-pictures=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or_else(|| {
            panic!(
                "the page's self-check did not run: {}",
                &dom[..dom.len().min(2000)]
            )
        });
    assert!(pictures.starts_with("ok "), "pictures: {pictures}");
    let (shown, all) = pictures[3..].split_once('/').unwrap();
    assert_eq!(shown, all);
    assert!(all.parse::<usize>().unwrap() >= steps.len(), "{pictures}");
    assert!(
        dom.contains("data-errors=\"none\""),
        "script errors in the page"
    );
    for step in steps {
        assert!(
            dom.contains(&format!("data-step=\"{step}\"")),
            "no section for {step} in the DOM"
        );
    }
}

#[test]
fn print_config_prints_documented_defaults_that_config_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let o = xtask(&["checklist", "--print-config"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    for section in [
        "[train]",
        "[data]",
        "[timings]",
        "[gradients]",
        "[results]",
        "[baseline]",
    ] {
        assert!(text.contains(section), "{section} missing: {text}");
    }
    assert!(text.contains("# Growth of a gradient range"), "{text}");
    // The printed file, edited, drives a run; a flag on the command line wins over it.
    let config = dir.path().join("checklist.toml");
    let edited = text.replace(
        "# iterations = ...",
        "iterations = 5\nseed = 9\nsteps = [\"gradients\"]",
    );
    std::fs::write(&config, edited).unwrap();
    let out = dir.path().join("report");
    let o = xtask(&[
        "checklist",
        "--config",
        config.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--seed",
        "3",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let report = report_of(&out);
    assert_eq!(report["run"]["iterations"], 5);
    assert_eq!(report["run"]["seed"], 3);
    assert_eq!(report["steps"].as_array().unwrap().len(), 1);

    // A misspelt key or a config that does not exist is a usage error naming it.
    std::fs::write(&config, "[gradients]\nexplode_grwoth = 3\n").unwrap();
    assert_usage_error(
        &xtask(&["checklist", "--config", config.to_str().unwrap()]),
        "explode_grwoth",
    );
    assert_usage_error(
        &xtask(&["checklist", "--config", "/no/such.toml"]),
        "/no/such.toml",
    );
}

#[test]
fn a_baseline_fails_the_run_on_a_regression_and_passes_against_itself() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report");
    let run =
        |extra: &[&str]| checklist_in(&out, &["--steps", "gradients", "--iterations", "25"], extra);
    let o = run(&[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let baseline = dir.path().join("baseline.json");
    std::fs::copy(out.join("report.json"), &baseline).unwrap();
    let o = run(&["--baseline", baseline.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // A fault that turns the step to fail is a regression against the healthy baseline: exit 1.
    let o = run(&[
        "--baseline",
        baseline.to_str().unwrap(),
        "--inject",
        "lr-x100",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let report = report_of(&out);
    let step = &report["steps"][0];
    assert!(
        step["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["check"] == "regression" && f["subject"] == "gradients"),
        "{}",
        step["findings"]
    );
    // A baseline that is not a report is a usage error naming it.
    std::fs::write(&baseline, "{ not json").unwrap();
    assert_usage_error(
        &run(&["--baseline", baseline.to_str().unwrap()]),
        "baseline.json",
    );
}

#[test]
fn a_run_that_fails_part_way_keeps_the_previous_report_and_writes_what_it_had() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report");
    let o = xtask(&[
        "checklist",
        "--out",
        out.to_str().unwrap(),
        "--steps",
        "gradients",
        "--iterations",
        "4",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let before = files_under(&out);
    // The weights step runs, then the timings step refuses a layer that does not exist.
    let o = xtask(&[
        "checklist",
        "--out",
        out.to_str().unwrap(),
        "--steps",
        "weights,timings",
        "--iterations",
        "5",
        "--eval-samples",
        "100",
        "--inject",
        "slow-layer=nope",
    ]);
    assert_usage_error(&o, "nope");
    let now = files_under(&out);
    for (path, bytes) in &before {
        assert_eq!(now.get(path), Some(bytes), "{} changed", path.display());
    }
    let partial: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("partial/report.json")).unwrap()).unwrap();
    assert!(
        partial["run"]["interrupted"]
            .as_str()
            .unwrap()
            .contains("nope")
    );
    assert_eq!(partial["steps"][0]["step"], "weights");
    assert!(out.join("partial/index.html").is_file());
    assert!(out.join("partial/weights/trained.bpk").is_file());

    // Ctrl-C part way through training: exit 130, the previous report intact, the partial one
    // holding the iterations watched so far.
    let mut child = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args([
            "checklist",
            "--out",
            out.to_str().unwrap(),
            "--steps",
            "gradients",
            "--iterations",
            "100000",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    // Wait until training has started (the trainer's progress bar or the model line), then interrupt.
    std::thread::sleep(std::time::Duration::from_secs(8));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the run ended before it was interrupted"
    );
    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the run did not stop after Ctrl-C"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(status.code(), Some(130));
    let now = files_under(&out);
    for (path, bytes) in &before {
        assert_eq!(now.get(path), Some(bytes), "{} changed", path.display());
    }
    let partial: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("partial/report.json")).unwrap()).unwrap();
    assert!(
        partial["run"]["interrupted"]
            .as_str()
            .unwrap()
            .contains("Ctrl-C")
    );
    let watched = partial["steps"][0]["metrics"]["iterations_watched"]
        .as_f64()
        .unwrap();
    assert!(watched >= 1.0 && watched < 100_000.0, "{watched}");
}

#[test]
fn a_malformed_dataset_file_exits_2_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("my-mnist");
    std::fs::create_dir_all(&data).unwrap();
    let real = Path::new(env!("CARGO_MANIFEST_DIR")).join("../datasets/mnist");
    let mut images = std::fs::read(real.join("t10k-images-idx3-ubyte.gz")).unwrap();
    images.truncate(images.len() / 2);
    std::fs::write(data.join("train-images-idx3-ubyte.gz"), images).unwrap();
    std::fs::copy(
        real.join("t10k-labels-idx1-ubyte.gz"),
        data.join("train-labels-idx1-ubyte.gz"),
    )
    .unwrap();
    let o = xtask(&[
        "checklist",
        "--dataset",
        data.to_str().unwrap(),
        "--out",
        dir.path().join("r").to_str().unwrap(),
    ]);
    assert_usage_error(&o, "train-images-idx3-ubyte.gz");
    assert_eq!(
        stderr(&o).trim().lines().count(),
        1,
        "one line: {}",
        stderr(&o)
    );

    // A header that disagrees with the data: the offset is named.
    let mut raw = Vec::new();
    use std::io::Read;
    flate2::read::GzDecoder::new(
        std::fs::File::open(real.join("t10k-images-idx3-ubyte.gz")).unwrap(),
    )
    .read_to_end(&mut raw)
    .unwrap();
    raw[0] = 7;
    std::fs::remove_file(data.join("train-images-idx3-ubyte.gz")).unwrap();
    std::fs::write(data.join("train-images-idx3-ubyte"), raw).unwrap();
    let o = xtask(&[
        "checklist",
        "--dataset",
        data.to_str().unwrap(),
        "--out",
        dir.path().join("r").to_str().unwrap(),
    ]);
    assert_usage_error(&o, "train-images-idx3-ubyte: byte 0");
}

#[test]
fn a_missing_dataset_path_exits_2() {
    let o = xtask(&["checklist", "--dataset", "/no/such/dataset"]);
    assert_usage_error(&o, "/no/such/dataset");
}

#[test]
fn unknown_or_unbuilt_steps_exit_2() {
    assert_usage_error(
        &xtask(&["checklist", "--steps", "data,bogus"]),
        "unknown step `bogus`",
    );
}

#[test]
fn an_unknown_fault_exits_2() {
    assert_usage_error(
        &xtask(&["checklist", "--inject", "no_such_fault=3"]),
        "unknown fault `no_such_fault`",
    );
}

/// Every file under `dir`, relative path to bytes.
fn files_under(dir: &Path) -> std::collections::BTreeMap<std::path::PathBuf, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(
                    p.strip_prefix(dir).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    out
}

#[test]
fn a_run_that_cannot_write_leaves_the_previous_report_intact() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report");
    let o = xtask(&[
        "checklist",
        "--out",
        out.to_str().unwrap(),
        "--seed",
        "1",
        "--iterations",
        "3",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let before = files_under(&out);
    assert!(before.contains_key(Path::new("report.json")));

    // The file-size limit set to 0 makes every write fail (as a full disk would), even for root.
    let script = format!(
        "trap '' XFSZ; ulimit -f 0; exec '{}' checklist --out '{}' --seed 2 --iterations 3",
        env!("CARGO_BIN_EXE_xtask"),
        out.display()
    );
    let o = Command::new("sh").arg("-c").arg(&script).output().unwrap();
    assert_usage_error(&o, "left as it was");
    // The report and every artifact of the previous run are intact, and no partial file is left.
    assert_eq!(files_under(&out), before);

    // An output path that is a file, not a folder.
    let file = dir.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    assert_usage_error(
        &xtask(&["checklist", "--out", file.to_str().unwrap()]),
        "a-file",
    );
}

#[test]
fn the_model_follows_the_dataset_and_the_report_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report");
    let o = xtask(&[
        "checklist",
        "--out",
        out.to_str().unwrap(),
        "--iterations",
        "7",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("model lenet (431080 trainable parameters) on flex"),
        "{stdout}"
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["run"]["model"], "lenet");
    assert_eq!(report["run"]["device"], "flex");
    assert_eq!(report["run"]["iterations"], 7);
}

#[test]
fn real_pytorch_weights_import_into_resnet20() {
    let dir = tempfile::tempdir().unwrap();
    let weights =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../datasets/weights/resnet20-12fca82f.th");
    let o = xtask(&[
        "checklist",
        "--out",
        dir.path().join("r").to_str().unwrap(),
        "--dataset",
        "cifar10",
        "--weights",
        weights.to_str().unwrap(),
        "--steps",
        "weights",
        "--eval-samples",
        "200",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("97 tensors applied, 0 missing, 0 unused"),
        "{stdout}"
    );
    assert!(
        stdout.contains("model resnet20 (269722 trainable parameters)"),
        "{stdout}"
    );
}

#[test]
fn models_devices_and_weights_that_do_not_fit_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r");
    let out = out.to_str().unwrap();
    assert_usage_error(
        &xtask(&["checklist", "--out", out, "--model", "alexnet"]),
        "AlexNet takes 3x224x224",
    );
    assert_usage_error(
        &xtask(&["checklist", "--out", out, "--model", "vgg16"]),
        "unknown model `vgg16`",
    );
    assert_usage_error(
        &xtask(&["checklist", "--out", out, "--device", "tpu"]),
        "unknown device `tpu`",
    );
    assert_usage_error(
        &xtask(&["checklist", "--out", out, "--iterations", "0"]),
        "--iterations",
    );
    let weights =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../datasets/weights/resnet20-12fca82f.th");
    // ResNet-20's weights do not fit LeNet.
    assert_usage_error(
        &xtask(&[
            "checklist",
            "--out",
            out,
            "--weights",
            weights.to_str().unwrap(),
        ]),
        "resnet20-12fca82f.th",
    );
    assert_usage_error(
        &xtask(&["checklist", "--out", out, "--weights", "nowhere.pt"]),
        "nowhere.pt",
    );
    for device in ["wgpu", "vulkan", "cuda"] {
        // Built without the feature (the default test build), the device is refused by name.
        if !cfg!(feature = "wgpu") {
            assert_usage_error(
                &xtask(&["checklist", "--out", out, "--device", device]),
                &format!("--features {device}"),
            );
        }
    }
}

fn report_of(out: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap()
}

#[test]
fn the_weights_step_proves_the_real_resnet20_import() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r");
    let weights =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../datasets/weights/resnet20-12fca82f.th");
    let o = xtask(&[
        "checklist",
        "--steps",
        "weights",
        "--dataset",
        "cifar10",
        "--weights",
        weights.to_str().unwrap(),
        "--eval-samples",
        "1000",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let report = report_of(&out);
    let step = &report["steps"][0];
    assert_eq!(step["step"], "weights");
    assert_eq!(step["verdict"], "pass");
    let m = &step["metrics"];
    for (key, want) in [
        ("tensors_in_model", 97.0),
        ("tensors_in_file", 97.0),
        ("tensors_applied", 97.0),
        ("tensors_missing", 0.0),
        ("tensors_unused", 0.0),
        ("tensors_mismatched", 0.0),
        ("tensors_at_init", 0.0),
        ("max_abs_diff", 0.0),
    ] {
        assert_eq!(m[key].as_f64(), Some(want), "{key}: {m}");
    }
    // PyTorch measured 81.03% on the 10,000 JPEGs; a 1,000-image stratified sample lands near it.
    let accuracy = m["accuracy"].as_f64().unwrap();
    assert!((accuracy - 0.8103).abs() < 0.03, "accuracy {accuracy}");
    let artifacts: Vec<&str> = step["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(
        artifacts.contains(&"weights/conv1_filters.png"),
        "{artifacts:?}"
    );
    for a in artifacts {
        assert!(out.join(a).is_file(), "{a}");
    }
}

#[test]
fn each_weights_fault_fails_the_step_naming_the_layer() {
    for (fault, subject) in [
        ("skip-load=conv2", "conv2"),
        ("drop-tensors=ip1", "ip1"),
        ("key-prefix=backbone.", "every tensor in the file"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("r");
        let o = xtask(&[
            "checklist",
            "--steps",
            "weights",
            "--iterations",
            "5",
            "--inject",
            fault,
            "--out",
            out.to_str().unwrap(),
        ]);
        assert_eq!(o.status.code(), Some(1), "{fault}: {}", stderr(&o));
        let report = report_of(&out);
        let step = &report["steps"][0];
        assert_eq!(step["verdict"], "fail", "{fault}");
        let subjects: Vec<&str> = step["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["verdict"] == "fail")
            .map(|f| f["subject"].as_str().unwrap())
            .collect();
        assert!(subjects.contains(&subject), "{fault}: {subjects:?}");
    }
    // Without a fault the round trip passes.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r");
    let o = xtask(&[
        "checklist",
        "--steps",
        "weights",
        "--iterations",
        "5",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        report_of(&out)["steps"][0]["metrics"]["tensors_applied"],
        8.0
    );
}

#[test]
fn the_timings_step_profiles_every_layer_and_names_a_planted_slow_layer() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r");
    let o = xtask(&[
        "checklist",
        "--steps",
        "timings",
        // 3 warm-up iterations, then 5 timed.
        "--iterations",
        "8",
        "--loader",
        "on-demand",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let report = report_of(&out);
    let step = &report["steps"][0];
    assert_eq!(step["step"], "timings");
    for key in [
        "iteration_ms",
        "data_layer_ms",
        "data_layer_share",
        "forward_ms",
        "backward_ms",
        "optimizer_ms",
        "untraced_ms",
        "samples_per_second",
        "load_all_batch_ms",
        "on_demand_batch_ms",
        "cached_batch_ms",
        "hours_saved_500k",
    ] {
        assert!(
            step["metrics"][key].is_number(),
            "{key}: {}",
            step["metrics"]
        );
    }
    let layers: Vec<&str> = step["details"]["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        layers,
        [
            "data", "conv1", "pool1", "conv2", "pool2", "ip1", "ip2", "loss"
        ]
    );
    let trace: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("timings/trace.json")).unwrap()).unwrap();
    assert!(trace["traceEvents"].as_array().unwrap().len() > 5 * 16);
    assert!(
        std::fs::read_to_string(out.join("timings/layers.svg"))
            .unwrap()
            .starts_with("<svg")
    );

    let o = xtask(&[
        "checklist",
        "--steps",
        "timings",
        "--iterations",
        "3",
        "--inject",
        "slow-layer=ip2",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let step = &report_of(&out)["steps"][0];
    let bottleneck = step["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["check"] == "bottleneck")
        .unwrap();
    assert_eq!(bottleneck["subject"], "ip2");
    assert_eq!(bottleneck["verdict"], "warn");
    assert_eq!(step["verdict"], "warn");
    assert_eq!(step["details"]["ranked"][0]["name"], "ip2");
    assert_usage_error(
        &xtask(&[
            "checklist",
            "--steps",
            "timings",
            "--inject",
            "slow-layer=conv9",
            "--out",
            out.to_str().unwrap(),
        ]),
        "conv9",
    );
}

#[test]
fn the_gradients_step_passes_a_healthy_run_and_names_each_planted_fault() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r");
    let run =
        |extra: &[&str]| checklist_in(&out, &["--steps", "gradients", "--iterations", "60"], extra);
    let o = run(&[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let step = report_of(&out)["steps"][0].clone();
    assert_eq!(step["verdict"], "pass", "{}", step["findings"]);
    assert_eq!(step["metrics"]["iterations_watched"], 60.0);
    assert_eq!(step["metrics"]["first_nonfinite_iteration"], -1.0);
    assert!(
        step["metrics"]["loss_last"].as_f64().unwrap()
            < step["metrics"]["loss_first"].as_f64().unwrap()
    );
    assert!(out.join("gradients/iterations.json").is_file());
    assert!(
        std::fs::read_to_string(out.join("gradients/ranges.svg"))
            .unwrap()
            .contains("<polyline")
    );

    for (fault, checks, subject) in [
        ("lr-x100", &["exploding", "nonfinite"][..], None),
        ("nan=conv2", &["nonfinite"][..], Some("conv2")),
        (
            "bias-lr-mult=conv1:1000",
            &["imbalance"][..],
            Some("conv1.bias"),
        ),
    ] {
        let o = run(&["--inject", fault]);
        assert_eq!(o.status.code(), Some(1), "{fault}: {}", stderr(&o));
        let step = report_of(&out)["steps"][0].clone();
        assert_eq!(step["verdict"], "fail", "{fault}");
        let fails: Vec<(String, String, String)> = step["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["verdict"] == "fail")
            .map(|f| {
                (
                    f["check"].as_str().unwrap().to_string(),
                    f["subject"].as_str().unwrap().to_string(),
                    f["remedy"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        assert!(
            fails.iter().any(|(c, s, r)| checks.contains(&c.as_str())
                && subject.is_none_or(|want| s == want)
                && !r.is_empty()),
            "{fault}: {fails:?}"
        );
    }
}

#[test]
fn the_data_step_maps_mnist_and_fails_shuffled_labels() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r");
    let run =
        |extra: &[&str]| checklist_in(&out, &["--steps", "data", "--tsne-points", "1500"], extra);
    let o = run(&[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let step = report_of(&out)["steps"][0].clone();
    assert_eq!(step["step"], "data");
    assert_eq!(step["verdict"], "pass", "{}", step["findings"]);
    let m = &step["metrics"];
    assert_eq!(m["points"], 1500.0);
    assert!(m["knn_accuracy_2d"].as_f64().unwrap() > 0.85, "{m}");
    assert!(m["knn_accuracy_pca"].as_f64().unwrap() > 0.85, "{m}");
    assert!((m["chance"].as_f64().unwrap() - 0.1124).abs() < 0.01, "{m}");
    assert!(m["tsne_seconds"].as_f64().unwrap() > 0.0);
    for artifact in ["data/map.png", "data/map.svg", "data/mean_images.png"] {
        assert!(
            step["artifacts"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a == artifact),
            "{artifact}"
        );
        assert!(out.join(artifact).is_file(), "{artifact}");
    }
    let o = run(&["--inject", "shuffle-labels"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let step = report_of(&out)["steps"][0].clone();
    assert_eq!(step["verdict"], "fail");
    assert!(step["metrics"]["knn_accuracy_2d"].as_f64().unwrap() < 0.2);
}

/// The steps' verdicts and, per step, the subjects of its warn/fail findings.
fn verdicts(report: &serde_json::Value) -> Vec<(String, String, Vec<String>)> {
    report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let subjects = s["findings"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|f| f["verdict"] != "pass")
                .map(|f| f["subject"].as_str().unwrap().to_string())
                .collect();
            (
                s["step"].as_str().unwrap().to_string(),
                s["verdict"].as_str().unwrap().to_string(),
                subjects,
            )
        })
        .collect()
}

/// Every planted fault, through the whole checklist at once: the right step turns to warn or
/// fail naming the right subject, and every other step keeps the healthy run's verdict.
#[test]
fn each_planted_fault_turns_only_its_own_step() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r");
    let run = |extra: &[&str]| {
        let o = checklist_in(
            &out,
            &[
                "--iterations",
                "60",
                "--tsne-points",
                "1000",
                "--eval-samples",
                "500",
            ],
            extra,
        );
        assert!(
            matches!(o.status.code(), Some(0 | 1)),
            "{extra:?}: {}",
            stderr(&o)
        );
        verdicts(&report_of(&out))
    };
    let healthy = run(&[]);
    let names: Vec<&str> = healthy.iter().map(|(s, _, _)| s.as_str()).collect();
    assert_eq!(
        names,
        ["data", "weights", "timings", "gradients", "results"]
    );
    for (step, verdict, _) in &healthy {
        assert_eq!(verdict, "pass", "healthy {step}: {healthy:?}");
    }
    for (fault, step, verdict, subject) in [
        ("shuffle-labels", "data", "fail", None),
        ("skip-load=conv2", "weights", "fail", Some("conv2")),
        ("drop-tensors=ip1", "weights", "fail", Some("ip1")),
        ("key-prefix=backbone.", "weights", "fail", None),
        ("slow-layer=ip2", "timings", "warn", Some("ip2")),
        ("lr-x100", "gradients", "fail", None),
        ("nan=conv2", "gradients", "fail", Some("conv2")),
        (
            "bias-lr-mult=conv1:1000",
            "gradients",
            "fail",
            Some("conv1.bias"),
        ),
    ] {
        let got = run(&["--inject", fault]);
        for ((name, v, subjects), (_, healthy_v, _)) in got.iter().zip(&healthy) {
            if name == step {
                assert_eq!(v, verdict, "{fault}: {got:?}");
                if let Some(subject) = subject {
                    assert!(
                        subjects.iter().any(|s| s == subject),
                        "{fault}: {subjects:?}"
                    );
                }
            } else {
                assert_eq!(v, healthy_v, "{fault} changed step {name}: {got:?}");
            }
        }
    }
}
