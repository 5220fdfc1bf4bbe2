//! The reference models: ResNet-20 takes the real pre-trained PyTorch weights by name and
//! reproduces PyTorch's logits; AlexNet runs a real image at 224x224.

use burn::prelude::*;
use model_core::bundled;
use model_core::models::{
    AlexNet, Classifier, LeNet, ModelKind, PytorchImport, ResNet20, import_pytorch,
};
use model_core::tap::{Tap, TapDetail, trainable_param_count};
use model_core::{Batcher, LoadOptions};

mod common;
use common::{largest_difference_from_pytorch, reference, reference_input};

fn pretrained(device: &Device) -> ResNet20 {
    let mut model = ResNet20::cifar10(device);
    let outcome = import_pytorch(
        &mut model,
        &bundled::resnet20_weights(),
        &PytorchImport::data_parallel_checkpoint(),
    )
    .expect("the bundled ResNet-20 imports");
    assert!(outcome.is_complete(), "{outcome:?}");
    assert_eq!(outcome.applied.len(), 97, "every tensor of the file lands");
    model
}

#[test]
fn resnet20_reproduces_pytorchs_logits_from_the_real_weights() {
    let device = Device::flex();
    let model = pretrained(&device);
    let reference = reference();
    let resnet = &reference["cifar10"]["resnet20"];

    // PyTorch's exact input, from the file it was computed from.
    let values = reference_input();
    let images = Tensor::<4>::from_data(TensorData::new(values, [20, 3, 32, 32]), &device);
    let logits = model.forward(images).try_into_vec_as::<f32>().unwrap();

    let worst = largest_difference_from_pytorch(&logits);
    assert!(
        worst < 1e-4,
        "largest difference from PyTorch's logits: {worst}"
    );

    let labels: Vec<usize> = resnet["foolbox20_labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    let predicted: Vec<usize> = logits
        .chunks(10)
        .map(|row| {
            row.iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .unwrap()
                .0
        })
        .collect();
    assert_eq!(predicted, labels, "20 of 20, as PyTorch");
}

#[test]
fn resnet20_classifies_the_exact_pngs_through_the_data_layer() {
    let device = Device::flex();
    let model = pretrained(&device);
    let exact =
        bundled::cifar10_exact(&LoadOptions::default().with_cache(bundled::workspace_cache()))
            .unwrap();
    let batcher = Batcher::new(20, 0, bundled::resnet20_normalization()).in_order();
    let eval = model_core::train::evaluate(&model, &exact, &batcher, &device).unwrap();
    assert_eq!((eval.images, eval.correct), (20, 20));
}

#[test]
fn importing_a_file_that_does_not_fit_is_a_typed_error() {
    let device = Device::flex();
    // LeNet's parameters are not in a ResNet file.
    let mut lenet = LeNet::mnist(&device);
    let err = import_pytorch(
        &mut lenet,
        &bundled::resnet20_weights(),
        &PytorchImport::data_parallel_checkpoint(),
    )
    .expect_err("nothing of LeNet is in the file");
    assert!(err.to_string().contains("resnet20-12fca82f.th"), "{err}");
    // A file that is not a PyTorch file.
    let mut model = ResNet20::cifar10(&device);
    let err = import_pytorch(
        &mut model,
        &bundled::resnet20_reference(),
        &PytorchImport::data_parallel_checkpoint(),
    )
    .expect_err("JSON is not a PyTorch file");
    assert!(err.to_string().contains("reference_resnet20.json"), "{err}");
    let err = import_pytorch(
        &mut model,
        std::path::Path::new("no/such.th"),
        &PytorchImport::plain(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("no/such.th"), "{err}");
}

#[test]
fn alexnet_runs_one_real_image_at_224() {
    let device = Device::flex();
    device.seed(11);
    let model = AlexNet::new(1000, &device);
    assert_eq!(trainable_param_count(&model), 60_965_224);
    // A real CIFAR-10 test image, upscaled to AlexNet's input size.
    let png = &bundled::cifar10_exact_pngs().unwrap()[0];
    let img = image::open(&png.path).unwrap().to_rgb8();
    let img = image::imageops::resize(&img, 224, 224, image::imageops::FilterType::Triangle);
    let mut values = vec![0f32; 3 * 224 * 224];
    for (x, y, p) in img.enumerate_pixels() {
        for c in 0..3 {
            values[c * 224 * 224 + y as usize * 224 + x as usize] = p[c] as f32 / 255.0 - 0.5;
        }
    }
    let images = Tensor::<4>::from_data(TensorData::new(values, [1, 3, 224, 224]), &device);
    let mut tap = Tap::new(TapDetail::Full);
    let logits = model.forward_tapped(images, &mut tap);
    assert_eq!(logits.dims(), [1, 1000]);
    let trace = tap.forward_trace(&model);
    let names: Vec<&str> = trace.layers.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "conv1", "pool1", "conv2", "pool2", "conv3", "conv4", "conv5", "pool5", "fc6", "fc7",
            "fc8"
        ]
    );
    assert_eq!(trace.layer("conv1").unwrap().output_shape, [1, 96, 55, 55]);
    assert_eq!(trace.layer("pool5").unwrap().output_shape, [1, 256, 6, 6]);
    assert!(
        trace
            .layers
            .iter()
            .all(|l| l.forward_seconds > 0.0 && l.data.unwrap().is_finite())
    );
    assert_eq!(trace.param("conv1.weight").unwrap().shape, [96, 3, 11, 11]);
}

#[test]
fn model_names_parse() {
    for kind in ModelKind::ALL {
        assert_eq!(kind.name().parse::<ModelKind>().unwrap(), kind);
    }
    assert!("vgg".parse::<ModelKind>().unwrap_err().contains("lenet"));
}
