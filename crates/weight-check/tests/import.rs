//! The import proof on the real pre-trained ResNet-20 written by PyTorch, planted faults, and
//! transfer learning on MNIST.

use std::collections::BTreeMap;

use burn::module::Module;
use burn::prelude::*;
use burn::store::{BurnpackStore, ModuleSnapshot, PytorchStore};
use model_core::bundled::{self, MnistSplit};
use model_core::models::{LeNet, PytorchImport, ResNet20, build_seeded, import_pytorch};
use model_core::train::{OptimizerChoice, TrainConfig, Trainer, Unobserved};
use model_core::{LoadOptions, Normalization, SampleShape, Verdict};
use proptest::prelude::*;
use weight_check::{
    TensorStatus, WeightFormat, Weights, conv_filter_grid, prove, read_file, read_model,
    relative_change,
};

fn seeded<M: Module>(seed: u64, make: impl FnOnce(&Device) -> M) -> M {
    build_seeded(&Device::flex(), seed, make)
}

fn pytorch() -> WeightFormat {
    WeightFormat::Pytorch(PytorchImport::data_parallel_checkpoint())
}

#[test]
fn the_real_resnet20_lands_tensor_by_tensor() {
    let format = pytorch();
    let fresh = seeded(3, ResNet20::cifar10);
    let mut loaded = seeded(3, ResNet20::cifar10);
    let outcome = import_pytorch(
        &mut loaded,
        &bundled::resnet20_weights(),
        &PytorchImport::data_parallel_checkpoint(),
    )
    .unwrap();
    assert!(outcome.is_complete());
    let file = read_file(&bundled::resnet20_weights(), &format).unwrap();
    assert_eq!(file.len(), 97);
    let proof = prove(
        &read_model(&loaded, &format),
        &read_model(&fresh, &format),
        &file,
        &[],
    );
    assert_eq!(
        (
            proof.tensors_in_model,
            proof.tensors_in_file,
            proof.applied,
            proof.missing,
            proof.unused,
            proof.mismatched,
            proof.at_init
        ),
        (97, 97, 97, 0, 0, 0, 0)
    );
    assert_eq!(
        proof.max_abs_diff, 0.0,
        "every value read back from the model equals the file's"
    );
    let findings = proof.findings();
    assert_eq!(findings.len(), 1);
    assert_eq!(findings[0].verdict, Verdict::Pass);
    // The conv1 filters as a picture: 16 RGB 3x3 tiles in a 4x4 grid.
    let conv1 = &file["conv1.weight"];
    assert_eq!(conv1.shape, [16, 3, 3, 3]);
    let grid = conv_filter_grid(&conv1.values, [16, 3, 3, 3], 8, 8);
    assert_eq!(grid.dimensions(), (4 * 25 + 1, 4 * 25 + 1));
}

#[test]
fn a_skipped_layer_is_caught_as_still_at_its_initial_values() {
    let format = pytorch();
    let fresh = seeded(4, ResNet20::cifar10);
    let mut loaded = seeded(4, ResNet20::cifar10);
    let mut store = PytorchStore::from_file(bundled::resnet20_weights())
        .with_top_level_key("state_dict")
        .with_key_remapping(r"^module\.", "")
        .with_predicate(|path: &str, _: &str| !path.starts_with("layer3.2.conv2"))
        .allow_partial(true);
    loaded.load_from(&mut store).unwrap();
    let file = read_file(&bundled::resnet20_weights(), &format).unwrap();
    let proof = prove(
        &read_model(&loaded, &format),
        &read_model(&fresh, &format),
        &file,
        &[],
    );
    assert_eq!(proof.at_init, 1);
    let t = proof
        .tensors
        .iter()
        .find(|t| t.name == "layer3.2.conv2.weight")
        .unwrap();
    assert_eq!(t.status, TensorStatus::NotLoaded);
    let fails: Vec<_> = proof
        .findings()
        .into_iter()
        .filter(|f| f.verdict == Verdict::Fail)
        .collect();
    assert!(
        fails.iter().any(|f| f.subject == "layer3.2.conv2"),
        "{fails:?}"
    );
    assert!(
        fails.iter().all(|f| f.subject == "layer3.2.conv2"),
        "{fails:?}"
    );
}

#[test]
fn missing_tensors_a_key_prefix_and_a_wrong_head_are_named() {
    let format = pytorch();
    let file = read_file(&bundled::resnet20_weights(), &format).unwrap();

    // The file lacks one layer.
    let mut short = file.clone();
    short.retain(|name, _| !name.starts_with("layer1.0.bn1."));
    let fresh = seeded(5, ResNet20::cifar10);
    let mut loaded = seeded(5, ResNet20::cifar10);
    let mut store = PytorchStore::from_file(bundled::resnet20_weights())
        .with_top_level_key("state_dict")
        .with_key_remapping(r"^module\.", "")
        .with_predicate(|path: &str, _: &str| !path.starts_with("layer1.0.bn1."))
        .allow_partial(true);
    loaded.load_from(&mut store).unwrap();
    let proof = prove(
        &read_model(&loaded, &format),
        &read_model(&fresh, &format),
        &short,
        &[],
    );
    assert_eq!(proof.missing, 4, "weight, bias, running mean and variance");
    let fails: Vec<_> = proof
        .findings()
        .into_iter()
        .filter(|f| f.verdict == Verdict::Fail)
        .collect();
    assert_eq!(fails.len(), 1, "{fails:?}");
    assert_eq!(
        (fails[0].check.as_str(), fails[0].subject.as_str()),
        ("missing", "layer1.0.bn1")
    );

    // Every key carries an extra prefix: nothing lands.
    let prefixed = WeightFormat::Pytorch(PytorchImport {
        top_level_key: Some("state_dict".into()),
        key_remapping: vec![(r"^module\.".into(), "backbone.".into())],
        allow_partial: true,
    });
    let file = read_file(&bundled::resnet20_weights(), &prefixed).unwrap();
    let untouched = seeded(5, ResNet20::cifar10);
    let proof = prove(
        &read_model(&untouched, &format),
        &read_model(&fresh, &format),
        &file,
        &[],
    );
    assert_eq!((proof.applied, proof.unused, proof.missing), (0, 97, 97));
    let findings = proof.findings();
    assert!(
        findings
            .iter()
            .any(|f| f.verdict == Verdict::Fail && f.subject == "every tensor in the file"),
        "{findings:?}"
    );

    // A head with 100 classes instead of 10.
    let wide = seeded(5, |d| ResNet20::new(SampleShape::new(3, 32, 32), 100, d));
    let file = read_file(&bundled::resnet20_weights(), &format).unwrap();
    let proof = prove(
        &read_model(&wide, &format),
        &read_model(&wide, &format),
        &file,
        &[],
    );
    assert_eq!(proof.mismatched, 2);
    let t = proof
        .tensors
        .iter()
        .find(|t| t.name == "linear.weight")
        .unwrap();
    assert_eq!(
        t.status,
        TensorStatus::Mismatched {
            model_shape: vec![100, 64],
            file_shape: vec![10, 64]
        }
    );
    assert!(
        proof
            .findings()
            .iter()
            .any(|f| f.check == "shape_mismatch" && f.subject == "linear")
    );
}

#[test]
fn transfer_learning_keeps_the_convolutions_and_a_fresh_head() {
    let dir = tempfile::tempdir().unwrap();
    let train = bundled::mnist(
        MnistSplit::Train,
        &LoadOptions::default().with_cache(bundled::workspace_cache()),
    )
    .unwrap()
    .stratified_subset(640, 1)
    .unwrap();
    let device = Device::flex().autodiff();
    let model = seeded(6, LeNet::mnist).fork(&device);
    let mut trainer = Trainer::new(
        model,
        TrainConfig::new(OptimizerChoice::sgd(0.9), 0.01, Normalization::mnist()),
        &device,
    );
    trainer.fit(&train, 10, &mut Unobserved).unwrap();
    let saved = dir.path().join("lenet.bpk");
    trainer.save_checkpoint(&saved).unwrap();

    let format = WeightFormat::Burnpack;
    let fresh = seeded(7, LeNet::mnist);
    let mut student = seeded(7, LeNet::mnist);
    let mut store = BurnpackStore::from_file(&saved)
        .with_regex("^conv")
        .allow_partial(true);
    student.load_from(&mut store).unwrap();
    let file = read_file(&saved, &format).unwrap();
    let excluded = vec!["ip1".to_string(), "ip2".to_string()];
    let proof = prove(
        &read_model(&student, &format),
        &read_model(&fresh, &format),
        &file,
        &excluded,
    );
    assert_eq!(
        (proof.applied, proof.excluded, proof.missing, proof.unused),
        (4, 4, 0, 0),
        "{:?}",
        proof.tensors
    );
    assert_eq!(proof.max_abs_diff, 0.0);
    assert!(proof.findings().iter().all(|f| f.verdict != Verdict::Fail));
    // The convolutions moved during training; the head is the fresh one.
    let before = read_model(&fresh, &format);
    let after = read_model(&student, &format);
    let change = relative_change(&before, &after);
    assert!(change["conv1.weight"] > 0.0);
    assert_eq!(change["ip2.weight"], 0.0);
}

fn weight_set() -> impl Strategy<Value = BTreeMap<String, Weights>> {
    proptest::collection::btree_map(
        "[a-c]\\.[wb]",
        proptest::collection::vec(-10f32..10.0, 1..6).prop_map(|values| Weights {
            shape: vec![values.len()],
            values,
        }),
        0..6,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// The proof's counts always add up to the model's and the file's tensor counts.
    #[test]
    fn the_counts_add_up(model in weight_set(), file in weight_set(), excluded in proptest::collection::vec("[a-c]", 0..2)) {
        let proof = prove(&model, &model, &file, &excluded);
        prop_assert_eq!(proof.applied + proof.not_loaded + proof.missing + proof.mismatched + proof.excluded, proof.tensors_in_model);
        let file_excluded_unloaded = file.keys().filter(|k| !model.contains_key(*k) && excluded.iter().any(|e| k.starts_with(&format!("{e}.")))).count();
        let in_both = file.keys().filter(|k| model.contains_key(*k)).count();
        prop_assert_eq!(in_both + proof.unused + file_excluded_unloaded, proof.tensors_in_file);
    }

    /// Saving and loading random weights round-trips exactly.
    #[test]
    fn burnpack_round_trips_exactly(seed in any::<u64>()) {
        let dir = tempfile::tempdir().unwrap();
        let model = seeded(seed, LeNet::mnist);
        let path = dir.path().join("w.bpk");
        model.clone().save_file(&path).unwrap();
        let mut other = seeded(seed.wrapping_add(1), LeNet::mnist);
        let mut store = BurnpackStore::from_file(&path);
        other.load_from(&mut store).unwrap();
        let format = WeightFormat::Burnpack;
        prop_assert_eq!(read_model(&model, &format), read_model(&other, &format));
        let proof = prove(&read_model(&other, &format), &read_model(&seeded(seed.wrapping_add(1), LeNet::mnist), &format), &read_file(&path, &format).unwrap(), &[]);
        prop_assert_eq!(proof.applied, 8);
        prop_assert_eq!(proof.max_abs_diff, 0.0);
    }
}

/// The real scenario end to end: the imported ResNet-20 on all 10,000 CIFAR-10 test JPEGs lands
/// within 1.5 points of PyTorch's 81.03% on the same images.
#[test]
fn the_imported_resnet20_matches_pytorchs_accuracy_on_the_jpeg_test_set() {
    let mut model = seeded(8, ResNet20::cifar10);
    import_pytorch(
        &mut model,
        &bundled::resnet20_weights(),
        &PytorchImport::data_parallel_checkpoint(),
    )
    .unwrap();
    let test =
        bundled::cifar10_test(&LoadOptions::default().with_cache(bundled::workspace_cache()))
            .unwrap();
    let batcher = model_core::Batcher::new(200, 0, bundled::resnet20_normalization());
    let eval = model_core::train::evaluate(&model, &test, &batcher, &Device::flex()).unwrap();
    eprintln!(
        "ResNet-20 on the 10,000 JPEGs: {:.2}% ({} s)",
        100.0 * eval.accuracy,
        eval.seconds
    );
    assert_eq!(eval.images, 10_000);
    assert!(
        (eval.accuracy - 0.8103).abs() <= 0.015,
        "accuracy {}",
        eval.accuracy
    );
}

/// SafeTensors in PyTorch's layout (as `safetensors.torch.save_file` writes a state dict): the
/// real ResNet-20 written out and imported again, proven tensor by tensor.
#[test]
fn safetensors_files_are_proven_too() {
    use burn::store::{BurnToPyTorchAdapter, SafetensorsStore};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("resnet20.safetensors");
    let mut teacher = seeded(9, ResNet20::cifar10);
    import_pytorch(
        &mut teacher,
        &bundled::resnet20_weights(),
        &PytorchImport::data_parallel_checkpoint(),
    )
    .unwrap();
    let mut out = SafetensorsStore::from_file(&path).with_to_adapter(BurnToPyTorchAdapter);
    teacher.save_into(&mut out).unwrap();

    let format = WeightFormat::for_path(&path, PytorchImport::plain());
    assert!(matches!(format, WeightFormat::Safetensors(_)));
    let file = read_file(&path, &format).unwrap();
    assert_eq!(
        file["layer1.0.bn1.weight"],
        read_file(&bundled::resnet20_weights(), &pytorch()).unwrap()["layer1.0.bn1.weight"]
    );
    let fresh = seeded(10, ResNet20::cifar10);
    let mut student = seeded(10, ResNet20::cifar10);
    let outcome = format.load_into(&mut student, &path).unwrap();
    assert_eq!(outcome.applied.len(), 97);
    let proof = prove(
        &read_model(&student, &format),
        &read_model(&fresh, &format),
        &file,
        &[],
    );
    assert_eq!(
        (
            proof.applied,
            proof.missing,
            proof.unused,
            proof.max_abs_diff
        ),
        (97, 0, 0, 0.0)
    );
}
