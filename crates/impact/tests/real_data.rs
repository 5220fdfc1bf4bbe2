//! The step on the bundled real data: a briefly trained LeNet on MNIST (maps of one test image
//! per digit and model impact on the mean image), and the real pre-trained ResNet-20 on a
//! CIFAR-10 automobile (occlusion and inverse maps). The pictures stay in
//! `target/impact-tests/` for a look.

use std::path::PathBuf;

use burn::prelude::*;
use impact::{ImpactCheck, Input, Occlusion, step_report};
use model_core::bundled::{self, MnistSplit};
use model_core::models::{Classifier, LeNet, build_seeded};
use model_core::train::{OptimizerChoice, TrainConfig, Trainer, Unobserved};
use model_core::{LoadOptions, Normalization, Step};

fn out_dir(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let dir = target.join("impact-tests").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn options() -> LoadOptions {
    LoadOptions::default().with_cache(bundled::workspace_cache())
}

#[test]
fn mnist_maps_one_image_per_digit_and_the_mean_image() {
    let train = bundled::mnist(MnistSplit::Train, &options()).unwrap();
    let test = bundled::mnist(MnistSplit::Test, &options()).unwrap();
    let device = Device::flex().autodiff();
    let model = build_seeded(&device, 11, LeNet::mnist);
    let config = TrainConfig::new(OptimizerChoice::sgd(0.9), 0.01, Normalization::mnist())
        .with_batch_size(64);
    let mut trainer = Trainer::new(model, config, &device);
    trainer.fit(&train, 300, &mut Unobserved).unwrap();
    let held_out = test.stratified_subset(1_000, 1).unwrap();
    let eval = trainer.evaluate(&held_out).unwrap();
    eprintln!(
        "LeNet after 300 iterations: {:.1}% on 1,000 test images",
        100.0 * eval.accuracy
    );
    assert!(eval.accuracy > 0.9, "{eval:?}");

    let dir = out_dir("mnist");
    let check = ImpactCheck::builder().window(6).stride(2).build().unwrap();
    let outcome = check
        .run(
            trainer.model(),
            &held_out,
            &Normalization::mnist(),
            &device,
            Some(&dir),
        )
        .unwrap();
    let report = step_report(&outcome);
    assert_eq!(report.step, Step::Results);
    assert_eq!(report.metrics["images_mapped"], 10.0);
    assert!(report.metrics["windows_per_second"] > 0.0);
    let share = report.metrics["evidence_inside_share"];
    eprintln!(
        "MNIST: {} windows at {:.0}/s, smallest inside share {share:.3}, verdict {}",
        outcome.windows, report.metrics["windows_per_second"], report.verdict
    );
    assert!(share > 0.0 && share <= 1.0);
    for (digit, image) in outcome.images.iter().enumerate() {
        assert_eq!(image.label, digit);
        assert_eq!(
            image.occlusion.target, digit,
            "a correctly classified image is chosen"
        );
        assert_eq!(image.occlusion.stats.windows, 144);
        assert!(image.occlusion.probability_drop.max() > 0.0);
        eprintln!(
            "  digit {digit}: inside share {:.3}, peak {:?}",
            image.inside_share,
            image.occlusion.probability_drop.argmax()
        );
    }
    // A mean-image label map that tells several digits apart.
    let mut seen: Vec<i32> = outcome.model_impact.labels.clone();
    seen.sort();
    seen.dedup();
    assert!(seen.iter().filter(|&&l| l >= 0).count() >= 2, "{seen:?}");
    assert_eq!(report.artifacts.len(), 10 * 4 + 3);
    for artifact in &report.artifacts {
        assert!(dir.join(artifact).is_file(), "{artifact}");
    }
    let json: serde_json::Value = serde_json::to_value(&report).unwrap();
    assert!(json["metrics"]["evidence_inside_share"].is_number());
}

#[test]
fn resnet20_maps_a_cifar10_automobile() {
    let device = Device::flex();
    let model = bundled::resnet20_pretrained(&device).unwrap();
    let test = bundled::cifar10_test(&options()).unwrap();
    let automobile = test
        .class_names()
        .iter()
        .position(|c| c == "automobile")
        .unwrap() as u8;
    let cars: Vec<usize> = (0..test.len())
        .filter(|&i| test.label(i) == automobile)
        .take(20)
        .collect();
    let cars = test.subset(&cars).unwrap();
    let norm = bundled::resnet20_normalization();

    let dir = out_dir("cifar10");
    let check = ImpactCheck::builder().window(8).stride(2).build().unwrap();
    let outcome = check
        .run(&model, &cars, &norm, &device, Some(&dir))
        .unwrap();
    let report = step_report(&outcome);
    assert_eq!(report.metrics["images_mapped"], 1.0);
    let car = &outcome.images[0];
    eprintln!(
        "automobile #{}: p = {:.3}, {} windows, inside share {:.3}, occlusion peak {:?}, inverse peak {:?}, {:.0} windows/s",
        car.index,
        car.occlusion.base_probability,
        car.occlusion.stats.windows,
        car.inside_share,
        car.occlusion.probability_drop.argmax(),
        car.inverse.probability.argmax(),
        outcome.windows_per_second()
    );
    assert_eq!(
        car.occlusion.target, automobile as usize,
        "the chosen car is recognised"
    );
    assert_eq!(car.occlusion.stats.windows, 169);
    assert!(car.occlusion.probability_drop.max() > 0.0);
    assert!(car.inverse.probability.max() > car.inverse.fill_probability);
    for artifact in &report.artifacts {
        assert!(dir.join(artifact).is_file(), "{artifact}");
    }

    // The same maps from the engine directly, one window at a time, agree.
    let mut pixels = vec![0u8; cars.shape().len()];
    cars.read_sample(car.index, &mut pixels).unwrap();
    let input = Input::from_pixels(&pixels, cars.shape(), &norm).unwrap();
    let single = Occlusion::builder()
        .window(8)
        .stride(2)
        .normalization(norm)
        .max_batch(1)
        .build()
        .unwrap();
    let maps = single
        .occlude(&|x| model.forward(x), &input, &device)
        .unwrap();
    let diff = maps
        .probability_drop
        .values
        .iter()
        .zip(&car.occlusion.probability_drop.values)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(diff < 1e-4, "{diff}");
}
