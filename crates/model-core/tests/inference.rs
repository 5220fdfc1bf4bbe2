//! The batched CPU inference path gives Burn's logits: on the real pre-trained ResNet-20 against
//! PyTorch's own figures, on seeded LeNets and ResNet-20s of random batch sizes (property tests,
//! batch norm statistics that are not the identity), and on AlexNet's grouped convolutions.

use burn::prelude::*;
use model_core::SampleShape;
use model_core::bundled;
use model_core::inference::{InferenceNet, LowerError, Shortcut};
use model_core::models::{AlexNet, Classifier, LeNet, ResNet20, build_seeded};
use proptest::prelude::*;

mod common;
use common::{largest_difference_from_pytorch, reference_input};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn random_images(seed: u64, batch: usize, shape: SampleShape) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..batch * shape.len())
        .map(|_| rng.random_range(-2.0f32..2.0))
        .collect()
}

fn burn_logits<M: Classifier>(model: &M, values: &[f32], batch: usize) -> Vec<f32> {
    let s = model.input_shape();
    let x = Tensor::<4>::from_data(
        TensorData::new(values.to_vec(), [batch, s.channels, s.height, s.width]),
        &Device::flex(),
    );
    model.forward(x).try_into_vec_as::<f32>().unwrap()
}

/// `batch` copies of `reference` (one image), each with a random window of at most a third of
/// the side (over every channel) set to random values, as occlusion makes them; the first copy
/// is left as it is and the last is changed everywhere.
fn near_images(seed: u64, reference: &[f32], shape: SampleShape, batch: usize) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xa11ce);
    let (h, w) = (shape.height, shape.width);
    let mut images = Vec::with_capacity(batch * shape.len());
    for i in 0..batch {
        let mut image = reference.to_vec();
        let (y0, x0, y1, x1) = if i == batch - 1 && batch > 1 {
            (0, 0, h, w)
        } else if i == 0 {
            (0, 0, 0, 0)
        } else {
            // An occlusion window: at most a third of the side, anywhere.
            let (wh, ww) = (
                rng.random_range(1..=(h / 3).max(1)),
                rng.random_range(1..=(w / 3).max(1)),
            );
            let (y0, x0) = (rng.random_range(0..=h - wh), rng.random_range(0..=w - ww));
            (y0, x0, y0 + wh, x0 + ww)
        };
        let v = rng.random_range(-2.0f32..2.0);
        for c in 0..shape.channels {
            for y in y0..y1 {
                for x in x0..x1 {
                    image[(c * h + y) * w + x] = if rng.random_bool(0.5) { v } else { -v };
                }
            }
        }
        images.extend(image);
    }
    images
}

/// The largest difference, relative to the largest logit magnitude (at least 1).
fn worst_relative(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(1f32, |m, v| m.max(v.abs()));
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

/// A ResNet-20 whose batch norms hold non-trivial running statistics and affine parameters, so
/// the folding into the convolutions is exercised.
fn resnet_with_statistics(seed: u64) -> ResNet20 {
    let device = Device::flex();
    let mut model = build_seeded(&device, seed, ResNet20::cifar10);
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed);
    let mut perturb = |bn: &mut burn::nn::BatchNorm| {
        let n = bn.gamma.val().dims()[0];
        let mut vec = |lo: f32, hi: f32| {
            Tensor::<1>::from_data(
                TensorData::new(
                    (0..n).map(|_| rng.random_range(lo..hi)).collect::<Vec<_>>(),
                    [n],
                ),
                &device,
            )
        };
        bn.gamma = burn::module::Param::from_tensor(vec(0.5, 1.5));
        bn.beta = burn::module::Param::from_tensor(vec(-0.5, 0.5));
        bn.running_mean = burn::module::RunningState::new(vec(-0.3, 0.3));
        bn.running_var = burn::module::RunningState::new(vec(0.5, 2.0));
    };
    perturb(&mut model.bn1);
    for block in model
        .layer1
        .iter_mut()
        .chain(model.layer2.iter_mut())
        .chain(model.layer3.iter_mut())
    {
        perturb(&mut block.bn1);
        perturb(&mut block.bn2);
    }
    model
}

#[test]
fn the_real_resnet20_gives_pytorchs_logits() {
    let device = Device::flex();
    let model = bundled::resnet20_pretrained(&device).expect("the bundled ResNet-20");
    let net = model.inference_net().expect("ResNet-20 lowers");
    let values = reference_input();
    let logits = net.forward_host(&values, 20);

    let worst = largest_difference_from_pytorch(&logits);
    assert!(worst < 1e-4, "largest difference from PyTorch: {worst}");

    // The tensor-level entry point gives the same figures.
    let x = Tensor::<4>::from_data(TensorData::new(values, [20, 3, 32, 32]), &device);
    let through_tensor = net.forward(x).try_into_vec_as::<f32>().unwrap();
    assert_eq!(through_tensor, logits);
}

#[test]
fn a_residual_convolution_needs_a_saved_input() {
    let device = Device::flex();
    let model = ResNet20::cifar10(&device);
    let err = InferenceNet::builder(model.input_shape())
        .conv("conv1", &model.conv1, Some(&model.bn1), true)
        .unwrap()
        .conv_residual(
            "layer1.0.conv2",
            &model.layer1[0].conv2,
            None,
            Shortcut::Identity,
            true,
        )
        .unwrap_err();
    assert!(matches!(err, LowerError::Shape { .. }), "{err}");
    assert!(err.to_string().contains("layer1.0.conv2"), "{err}");
}

#[test]
fn a_layer_of_the_wrong_width_is_refused_by_name() {
    let device = Device::flex();
    let lenet = LeNet::mnist(&device);
    // ip2 takes 500 inputs; after conv1 there are 20x24x24.
    let err = InferenceNet::builder(lenet.input_shape())
        .conv("conv1", &lenet.conv1, None, false)
        .unwrap()
        .linear("ip2", &lenet.ip2, false)
        .unwrap_err();
    assert_eq!(
        err,
        LowerError::Shape {
            layer: "ip2".into(),
            expected: "500 inputs".into(),
            found: "11520".into(),
        }
    );
}

/// One image (each layer's tiles split between the threads), a few, and a batch large enough
/// for chunks of images per thread with a ragged last chunk: all give Burn's logits.
#[test]
fn every_batch_path_gives_burns_logits() {
    let lenet = build_seeded(&Device::flex(), 7, LeNet::mnist);
    let net = lenet.inference_net().unwrap();
    for batch in [1, 3, 37, 145] {
        let values = random_images(batch as u64, batch, lenet.input_shape());
        let worst = worst_relative(
            &net.forward_host(&values, batch),
            &burn_logits(&lenet, &values, batch),
        );
        assert!(
            worst < 1e-5,
            "lenet, batch {batch}: relative difference {worst}"
        );
    }
    let resnet = resnet_with_statistics(7);
    let net = resnet.inference_net().unwrap();
    for batch in [1, 2, 11] {
        let values = random_images(batch as u64, batch, resnet.input_shape());
        let worst = worst_relative(
            &net.forward_host(&values, batch),
            &burn_logits(&resnet, &values, batch),
        );
        assert!(
            worst < 1e-4,
            "resnet20, batch {batch}: relative difference {worst}"
        );
    }
}

/// The work the incremental forward does for one occluded LeNet copy, counted by hand: a 6x6
/// window in the corner changes 6x6 of conv1's 24x24 outputs, 3x3 of the pool's, 3x3 of conv2's
/// 8x8; the fully connected layers run whole.
#[test]
fn near_work_counts_the_changed_rectangles() {
    let lenet = build_seeded(&Device::flex(), 7, LeNet::mnist);
    let net = lenet.inference_net().unwrap();
    let shape = lenet.input_shape();
    let image = random_images(7, 1, shape);
    let reference = net.reference(&image);
    let fc = 800 * 500 + 500 * 10;
    let whole = 24 * 24 * 25 * 20 + 8 * 8 * 500 * 50 + fc;
    let mut corner = image.clone();
    for y in 0..6 {
        corner[y * 28..y * 28 + 6].fill(0.0);
    }
    let work = net.near_work(&reference, &corner);
    assert_eq!(work.whole, whole);
    assert_eq!(work.incremental, 36 * 25 * 20 + 9 * 500 * 50 + fc);
    assert_eq!(net.near_work(&reference, &image).incremental, fc);
    let everywhere: Vec<f32> = image.iter().map(|v| v + 1.0).collect();
    assert_eq!(net.near_work(&reference, &everywhere).incremental, whole);
}

/// AlexNet at 224x224: grouped convolutions (conv2, conv4, conv5), stride 4, overlapping
/// 3x3/2 pooling, dropout the identity.
#[test]
fn alexnet_lowered_equals_burns_forward() {
    let model = build_seeded(&Device::flex(), 3, |d| AlexNet::new(10, d));
    let net = model.inference_net().expect("AlexNet lowers");
    let values = random_images(3, 2, model.input_shape());
    let worst = worst_relative(
        &net.forward_host(&values, 2),
        &burn_logits(&model, &values, 2),
    );
    assert!(worst < 1e-4, "relative difference {worst}");
    // Near the first image, through the incremental path (stride 4, grouped, pooled regions).
    let reference = net.reference(&values[..model.input_shape().len()]);
    let near = near_images(3, reference.image(), model.input_shape(), 3);
    let worst = worst_relative(
        &net.forward_near(&reference, &near, 3),
        &net.forward_host(&near, 3),
    );
    assert!(worst < 1e-5, "incremental: relative difference {worst}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// Seeded LeNets on random batches: the lowered net's logits equal Burn's forward.
    #[test]
    fn lenet_lowered_equals_burns_forward(seed in 0u64..1_000, batch in 1usize..40) {
        let model = build_seeded(&Device::flex(), seed, LeNet::mnist);
        let net = model.inference_net().unwrap();
        let values = random_images(seed, batch, model.input_shape());
        let ours = net.forward_host(&values, batch);
        let burn = burn_logits(&model, &values, batch);
        let worst = worst_relative(&ours, &burn);
        prop_assert!(worst < 1e-5, "relative difference {}", worst);
        // A second call reuses the buffers of the first and must not see their contents.
        prop_assert_eq!(net.forward_host(&values, batch), ours);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// One convolution of random geometry (channels, kernel, stride, padding, input size; one
    /// channel takes its own im2col path) then a linear layer over its flattened output, so every
    /// output position and its order count: equal to Burn's.
    #[test]
    fn any_convolution_geometry_equals_burns(
        seed in 0u64..1_000,
        cin in 1usize..4,
        cout in 1usize..6,
        kernel in 1usize..4,
        stride in 1usize..3,
        pad in 0usize..2,
        side in 4usize..11,
        batch in 1usize..12,
    ) {
        use burn::nn::conv::Conv2dConfig;
        use burn::nn::{LinearConfig, PaddingConfig2d};
        let device = Device::flex();
        let conv = build_seeded(&device, seed, |d| {
            Conv2dConfig::new([cin, cout], [kernel, kernel])
                .with_stride([stride, stride])
                .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
                .init(d)
        });
        let out_side = (side + 2 * pad - kernel) / stride + 1;
        let linear = build_seeded(&device, seed + 1, |d| {
            LinearConfig::new(cout * out_side * out_side, 5).init(d)
        });
        let shape = SampleShape { channels: cin, height: side, width: side };
        let net = InferenceNet::builder(shape)
            .conv("conv", &conv, None, true)
            .unwrap()
            .linear("linear", &linear, false)
            .unwrap()
            .build()
            .unwrap();
        let values = random_images(seed, batch, shape);
        let x = Tensor::<4>::from_data(
            TensorData::new(values.clone(), [batch, cin, side, side]),
            &device,
        );
        let burn = linear
            .forward(burn::tensor::activation::relu(conv.forward(x)).flatten::<2>(1, 3))
            .try_into_vec_as::<f32>()
            .unwrap();
        let worst = worst_relative(&net.forward_host(&values, batch), &burn);
        prop_assert!(worst < 1e-5, "relative difference {}", worst);
        // The same geometry through the incremental path, near the first image.
        let reference = net.reference(&values[..shape.len()]);
        let near = near_images(seed, reference.image(), shape, batch);
        let whole = net.forward_host(&near, batch);
        let worst = worst_relative(&net.forward_near(&reference, &near, batch), &whole);
        prop_assert!(worst < 1e-5, "incremental: relative difference {}", worst);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10, ..ProptestConfig::default() })]

    /// Inputs that equal a reference image but in a rectangle, through the incremental path:
    /// the logits of the whole forward, for LeNet (one image up to chunks of many) and
    /// ResNet-20 (both shortcuts: the changed region follows the residual add).
    #[test]
    fn forward_near_equals_the_whole_forward(seed in 0u64..1_000, batch in 1usize..160) {
        let lenet = build_seeded(&Device::flex(), seed, LeNet::mnist);
        let net = lenet.inference_net().unwrap();
        let shape = lenet.input_shape();
        let reference = net.reference(&random_images(seed, 1, shape));
        let images = near_images(seed, reference.image(), shape, batch);
        let whole = net.forward_host(&images, batch);
        let near = net.forward_near(&reference, &images, batch);
        let worst = worst_relative(&near, &whole);
        prop_assert!(worst < 1e-5, "lenet: relative difference {}", worst);
        // A copy left as the reference gives the reference's logits (up to the rounding of a
        // fully connected product over another batch size).
        let worst = worst_relative(&near[..10], reference.logits());
        prop_assert!(worst < 1e-5, "unchanged copy: relative difference {}", worst);

        let resnet = resnet_with_statistics(seed);
        let net = resnet.inference_net().unwrap();
        let shape = resnet.input_shape();
        let batch = batch / 4 + 1;
        let reference = net.reference(&random_images(seed, 1, shape));
        let images = near_images(seed, reference.image(), shape, batch);
        let worst = worst_relative(
            &net.forward_near(&reference, &images, batch),
            &net.forward_host(&images, batch),
        );
        prop_assert!(worst < 1e-5, "resnet20: relative difference {}", worst);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4, ..ProptestConfig::default() })]

    /// Seeded ResNet-20s with non-trivial batch norm statistics, random batches (both
    /// shortcuts, the folding and the tile boundaries exercised).
    #[test]
    fn resnet20_lowered_equals_burns_forward(seed in 0u64..1_000, batch in 1usize..24) {
        let model = resnet_with_statistics(seed);
        let net = model.inference_net().unwrap();
        let values = random_images(seed, batch, model.input_shape());
        let ours = net.forward_host(&values, batch);
        let burn = burn_logits(&model, &values, batch);
        let worst = worst_relative(&ours, &burn);
        prop_assert!(worst < 1e-4, "relative difference {}", worst);
    }
}
