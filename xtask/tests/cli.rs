//! `cargo xtask checklist` as a user runs it: exit statuses, one-line errors naming the file,
//! the report's shape, and a failed write that leaves the previous report intact.

use std::path::Path;
use std::process::{Command, Output};

fn xtask(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask")).args(args).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn assert_usage_error(o: &Output, needle: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(2), "stderr: {err}");
    assert!(err.contains(needle), "`{needle}` not in: {err}");
    assert!(!err.contains("panicked") && !err.contains("backtrace"), "{err}");
}

#[test]
fn the_default_run_loads_mnist_and_writes_a_report_with_no_steps() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report");
    let o = xtask(&["checklist", "--out", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("mnist-train: 60000 samples"), "{stdout}");
    assert!(stdout.contains("verdict: pass"), "{stdout}");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["schema_version"], 1);
    assert_eq!(report["run"]["dataset"], "mnist");
    assert_eq!(report["run"]["seed"], 42);
    assert_eq!(report["verdict"], "pass");
    assert_eq!(report["steps"], serde_json::json!([]));
    assert_eq!(report["datasets"][0]["label_counts"], serde_json::json!([5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]));
    assert_eq!(report["datasets"][1]["samples"], 10_000);
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
    std::fs::copy(real.join("t10k-labels-idx1-ubyte.gz"), data.join("train-labels-idx1-ubyte.gz")).unwrap();
    let o = xtask(&["checklist", "--dataset", data.to_str().unwrap(), "--out", dir.path().join("r").to_str().unwrap()]);
    assert_usage_error(&o, "train-images-idx3-ubyte.gz");
    assert_eq!(stderr(&o).trim().lines().count(), 1, "one line: {}", stderr(&o));

    // A header that disagrees with the data: the offset is named.
    let mut raw = Vec::new();
    use std::io::Read;
    flate2::read::GzDecoder::new(std::fs::File::open(real.join("t10k-images-idx3-ubyte.gz")).unwrap())
        .read_to_end(&mut raw)
        .unwrap();
    raw[0] = 7;
    std::fs::remove_file(data.join("train-images-idx3-ubyte.gz")).unwrap();
    std::fs::write(data.join("train-images-idx3-ubyte"), raw).unwrap();
    let o = xtask(&["checklist", "--dataset", data.to_str().unwrap(), "--out", dir.path().join("r").to_str().unwrap()]);
    assert_usage_error(&o, "train-images-idx3-ubyte: byte 0");
}

#[test]
fn a_missing_dataset_path_exits_2() {
    let o = xtask(&["checklist", "--dataset", "/no/such/dataset"]);
    assert_usage_error(&o, "/no/such/dataset");
}

#[test]
fn unknown_or_unbuilt_steps_exit_2() {
    assert_usage_error(&xtask(&["checklist", "--steps", "data,bogus"]), "unknown step `bogus`");
    assert_usage_error(&xtask(&["checklist", "--steps", "gradients,data"]), "step `data`");
}

#[test]
fn an_unknown_fault_exits_2() {
    assert_usage_error(&xtask(&["checklist", "--inject", "no_such_fault=3"]), "unknown fault `no_such_fault`");
}

#[test]
fn a_run_that_cannot_write_leaves_the_previous_report_intact() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report");
    let o = xtask(&["checklist", "--out", out.to_str().unwrap(), "--seed", "1"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let before = std::fs::read(out.join("report.json")).unwrap();

    // The file-size limit set to 0 makes every write fail (as a full disk would), even for root.
    let script = format!(
        "trap '' XFSZ; ulimit -f 0; exec '{}' checklist --out '{}' --seed 2",
        env!("CARGO_BIN_EXE_xtask"),
        out.display()
    );
    let o = Command::new("sh").arg("-c").arg(&script).output().unwrap();
    assert_usage_error(&o, "previous report is left as it was");
    assert_eq!(std::fs::read(out.join("report.json")).unwrap(), before, "the previous report is intact");
    let names: Vec<String> =
        std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(names, vec!["report.json".to_string()], "no partial file is left behind");

    // An output path that is a file, not a folder.
    let file = dir.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    assert_usage_error(&xtask(&["checklist", "--out", file.to_str().unwrap()]), "a-file");
}

#[test]
fn the_model_follows_the_dataset_and_the_report_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report");
    let o = xtask(&["checklist", "--out", out.to_str().unwrap(), "--iterations", "7"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("model lenet (431080 trainable parameters) on flex"), "{stdout}");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["run"]["model"], "lenet");
    assert_eq!(report["run"]["device"], "flex");
    assert_eq!(report["run"]["iterations"], 7);
}

#[test]
fn real_pytorch_weights_import_into_resnet20() {
    let dir = tempfile::tempdir().unwrap();
    let weights = Path::new(env!("CARGO_MANIFEST_DIR")).join("../datasets/weights/resnet20-12fca82f.th");
    let o = xtask(&[
        "checklist",
        "--out",
        dir.path().join("r").to_str().unwrap(),
        "--dataset",
        "cifar10",
        "--weights",
        weights.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("97 tensors applied, 0 missing, 0 unused"), "{stdout}");
    assert!(stdout.contains("model resnet20 (269722 trainable parameters)"), "{stdout}");
}

#[test]
fn models_devices_and_weights_that_do_not_fit_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r");
    let out = out.to_str().unwrap();
    assert_usage_error(&xtask(&["checklist", "--out", out, "--model", "alexnet"]), "AlexNet takes 3x224x224");
    assert_usage_error(&xtask(&["checklist", "--out", out, "--model", "vgg16"]), "unknown model `vgg16`");
    assert_usage_error(&xtask(&["checklist", "--out", out, "--device", "tpu"]), "unknown device `tpu`");
    assert_usage_error(&xtask(&["checklist", "--out", out, "--iterations", "0"]), "--iterations");
    let weights = Path::new(env!("CARGO_MANIFEST_DIR")).join("../datasets/weights/resnet20-12fca82f.th");
    // ResNet-20's weights do not fit LeNet.
    assert_usage_error(&xtask(&["checklist", "--out", out, "--weights", weights.to_str().unwrap()]), "resnet20-12fca82f.th");
    assert_usage_error(&xtask(&["checklist", "--out", out, "--weights", "nowhere.pt"]), "nowhere.pt");
    for device in ["wgpu", "vulkan", "cuda"] {
        // Built without the feature (the default test build), the device is refused by name.
        if !cfg!(feature = "wgpu") {
            assert_usage_error(&xtask(&["checklist", "--out", out, "--device", device]), &format!("--features {device}"));
        }
    }
}
