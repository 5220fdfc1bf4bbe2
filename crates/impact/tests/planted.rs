//! Planted evidence: a small network trained on synthetic images whose label is decided only by
//! a patch at a known place. The occlusion map's maximum falls inside the patch, the inverse
//! map agrees, and the step finds the evidence inside the object.

use std::sync::Arc;

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::relu;
use impact::{ImpactCheck, Input, Occlusion, Rect, Region, inside_share, step_report};
use model_core::models::{Classifier, build_seeded};
use model_core::tap::Tap;
use model_core::train::{OptimizerChoice, TrainConfig, Trainer, Unobserved};
use model_core::{Dataset, InMemory, Normalization, SampleShape, Step};

const SIDE: usize = 16;
/// The patch: rows 3..7, columns 9..13.
const PATCH: Rect = Rect {
    top: 3,
    left: 9,
    bottom: 7,
    right: 13,
};

#[derive(Module, Debug)]
struct TinyNet {
    conv_a: Conv2d,
    conv_b: Conv2d,
    head: Linear,
}

impl TinyNet {
    fn new(device: &Device) -> Self {
        let conv = |cin, cout, stride| {
            Conv2dConfig::new([cin, cout], [3, 3])
                .with_stride([stride, stride])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(device)
        };
        TinyNet {
            conv_a: conv(1, 8, 1),
            conv_b: conv(8, 16, 2),
            head: LinearConfig::new(16 * 8 * 8, 2).init(device),
        }
    }
}

impl Classifier for TinyNet {
    fn forward_tapped(&self, images: Tensor<4>, tap: &mut Tap) -> Tensor<2> {
        let x = tap.layer("conv_a", "Convolution+ReLU", images, |x| {
            relu(self.conv_a.forward(x))
        });
        let x = tap.layer("conv_b", "Convolution+ReLU", x, |x| {
            relu(self.conv_b.forward(x))
        });
        tap.layer("head", "InnerProduct", x, |x| {
            self.head.forward(x.flatten::<2>(1, 3))
        })
    }
    fn input_shape(&self) -> SampleShape {
        SampleShape::new(1, SIDE, SIDE)
    }
    fn num_classes(&self) -> usize {
        2
    }
    fn name(&self) -> &str {
        "tiny-net"
    }
}

/// `n` images: noise of a random amplitude (0, 60 or 120) everywhere; label 1 images carry a
/// white patch at [`PATCH`], label 0 images do not. Deterministic (a small LCG).
fn synthetic(n: usize, seed: u64) -> Dataset {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as u32
    };
    let mut pixels = Vec::with_capacity(n * SIDE * SIDE);
    let mut labels = Vec::with_capacity(n);
    for _ in 0..n {
        let label = (next() % 2) as u8;
        let amplitude = [0, 60, 120][(next() % 3) as usize];
        for y in 0..SIDE {
            for x in 0..SIDE {
                let v = if label == 1 && PATCH.contains(y, x) {
                    255
                } else if amplitude == 0 {
                    0
                } else {
                    next() % (amplitude + 1)
                };
                pixels.push(v as u8);
            }
        }
        labels.push(label);
    }
    let source = InMemory::new(SampleShape::new(1, SIDE, SIDE), pixels, "synthetic").unwrap();
    Dataset::new(
        "planted",
        vec!["no-patch".into(), "patch".into()],
        Arc::new(source),
        labels,
    )
    .unwrap()
}

fn norm() -> Normalization {
    Normalization {
        mean: vec![0.2],
        std: vec![0.3],
    }
}

#[test]
fn the_maps_find_the_planted_patch() {
    let device = Device::flex().autodiff();
    let model = build_seeded(&device, 3, TinyNet::new);
    let config = TrainConfig::new(OptimizerChoice::adam(), 2e-3, norm()).with_batch_size(32);
    let mut trainer = Trainer::new(model, config, &device);
    let train = synthetic(2_000, 1);
    trainer.fit(&train, 250, &mut Unobserved).unwrap();
    let test = synthetic(400, 2);
    let eval = trainer.evaluate(&test).unwrap();
    assert!(eval.accuracy > 0.97, "{eval:?}");

    let model = trainer.into_model().valid();
    let plain = device.clone().inner();
    let forward = |x: Tensor<4>| model.forward(x);
    let occlusion = Occlusion::builder()
        .window(4)
        .stride(1)
        .normalization(norm())
        .build()
        .unwrap();
    let mut checked = 0;
    let mut pixels = vec![0u8; SIDE * SIDE];
    for i in (0..test.len()).filter(|&i| test.label(i) == 1).take(5) {
        test.read_sample(i, &mut pixels).unwrap();
        let input = Input::from_pixels(&pixels, test.shape(), &norm()).unwrap();
        let occ = occlusion.occlude(&forward, &input, &plain).unwrap();
        assert_eq!(occ.target, 1, "the model sees the patch");
        let (y, x) = occ.probability_drop.argmax();
        assert!(PATCH.contains(y, x), "occlusion peak at ({y}, {x})");
        let (y, x) = occ.logit_drop.argmax();
        assert!(PATCH.contains(y, x), "logit-drop peak at ({y}, {x})");
        assert!(inside_share(&occ.probability_drop, &PATCH) > 0.3);
        let inv = occlusion.inverse(&forward, &input, &plain).unwrap();
        assert_eq!(inv.target, 1);
        let (y, x) = inv.probability.argmax();
        assert!(PATCH.contains(y, x), "inverse peak at ({y}, {x})");
        assert!(
            inv.fill_probability < 0.5,
            "an all-black image shows no patch"
        );
        checked += 1;
    }
    assert_eq!(checked, 5);

    // The step on the same model: with the patch as the object's region, no Warn; with the
    // region the opposite corner, every image of label 1 warns.
    let dir = tempfile::tempdir().unwrap();
    let check = ImpactCheck::builder()
        .window(4)
        .stride(1)
        .region(Region::BoundingBox { threshold: 250 })
        .build()
        .unwrap();
    let outcome = check
        .run(&model, &test, &norm(), &plain, Some(dir.path()))
        .unwrap();
    let report = step_report(&outcome);
    assert_eq!(report.step, Step::Results);
    assert_eq!(report.metrics["images_mapped"], 2.0);
    let patch_image = outcome.images.iter().find(|i| i.label == 1).unwrap();
    assert_eq!(patch_image.region, PATCH, "the bright patch is the object");
    assert!(
        patch_image.inside_share > 0.5,
        "{}",
        patch_image.inside_share
    );
    for artifact in &report.artifacts {
        assert!(dir.path().join(artifact).is_file(), "{artifact}");
    }
    // A region away from the patch: the label-1 image's evidence lies outside it.
    let corner = Rect {
        top: 10,
        left: 0,
        bottom: 16,
        right: 6,
    };
    let elsewhere = ImpactCheck::builder()
        .window(4)
        .stride(1)
        .region(Region::Fixed(corner))
        .build()
        .unwrap();
    let outcome = elsewhere.run(&model, &test, &norm(), &plain, None).unwrap();
    let report = step_report(&outcome);
    assert!(report.artifacts.is_empty());
    assert_eq!(report.verdict, model_core::Verdict::Warn);
    let warn = report
        .findings
        .iter()
        .find(|f| f.check == "evidence_outside_object" && f.subject.starts_with("label 1"))
        .expect("a finding for the patch image");
    assert!(warn.measured < 0.5);
    assert!(report.metrics["evidence_inside_share"] < 0.5);
}
