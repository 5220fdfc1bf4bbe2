//! The Tap: a cut graph gives the uncut graph's gradients; NaN shows where it starts; the
//! reference models run through it on real data.

use std::collections::BTreeMap;

use burn::module::{Module, ModuleVisitor, Param};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{Linear, LinearConfig};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::Distribution;
use model_core::bundled;
use model_core::models::{BasicBlock, Classifier, LeNet, ResNet20, plant_nan};
use model_core::tap::{Tap, TapDetail, trainable_param_count};
use model_core::{Batcher, LoadOptions, SampleShape};
use proptest::prelude::*;

/// A residual block with a shape change (option-A shortcut) and a classifier head.
#[derive(Module, Debug)]
struct ResidualNet {
    block: BasicBlock,
    head: Linear,
}

impl Classifier for ResidualNet {
    fn forward_tapped(&self, images: Tensor<4>, tap: &mut Tap) -> Tensor<2> {
        let x = tap.layer("block", "BasicBlock", images, |x| self.block.forward(x));
        tap.layer("head", "InnerProduct", x, |x| {
            self.head.forward(x.flatten::<2>(1, 3))
        })
    }
    fn input_shape(&self) -> SampleShape {
        SampleShape {
            channels: 16,
            height: 8,
            width: 8,
        }
    }
    fn num_classes(&self) -> usize {
        10
    }
    fn name(&self) -> &str {
        "residual"
    }
}

/// Every parameter gradient, by module path.
fn grads_by_name<M: Module>(model: &M, grads: &GradientsParams) -> BTreeMap<String, Vec<f32>> {
    struct V<'a> {
        stack: Vec<String>,
        grads: &'a GradientsParams,
        out: BTreeMap<String, Vec<f32>>,
    }
    impl ModuleVisitor for V<'_> {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.stack.push(name.into());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.stack.pop();
        }
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.get::<D>(p.id) {
                self.out
                    .insert(self.stack.join("."), g.try_into_vec_as::<f32>().unwrap());
            }
        }
    }
    let mut v = V {
        stack: vec![],
        grads,
        out: BTreeMap::new(),
    };
    model.visit(&mut v);
    v.out
}

fn loss_and_grads<M: Classifier>(
    model: &M,
    images: Tensor<4>,
    labels: Tensor<1, Int>,
    detail: TapDetail,
) -> (f32, BTreeMap<String, Vec<f32>>) {
    let mut tap = Tap::new(detail);
    let logits = model.forward_tapped(images, &mut tap);
    let ce = CrossEntropyLossConfig::new().init(&logits.device());
    let loss = tap.layer("loss", "SoftmaxWithLoss", logits, |l| ce.forward(l, labels));
    let value = loss.clone().inner().into_scalar::<f32>();
    let (grads, trace) = tap.backward(loss, model);
    assert_eq!(trace.is_some(), detail != TapDetail::Off);
    (value, grads_by_name(model, &grads))
}

fn assert_same_grads(
    plain: &BTreeMap<String, Vec<f32>>,
    cut: &BTreeMap<String, Vec<f32>>,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(
        plain.keys().collect::<Vec<_>>(),
        cut.keys().collect::<Vec<_>>()
    );
    prop_assert!(!plain.is_empty());
    for (name, a) in plain {
        let b = &cut[name];
        let scale = a.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
        let worst = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        prop_assert!(
            worst / scale <= 1e-5,
            "{name}: relative difference {} > 1e-5",
            worst / scale
        );
    }
    Ok(())
}

fn random_batch(
    device: &Device,
    shape: [usize; 4],
    classes: usize,
    seed: u64,
) -> (Tensor<4>, Tensor<1, Int>) {
    device.seed(seed);
    let images = Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), device);
    let labels: Vec<i64> = (0..shape[0])
        .map(|i| ((seed as usize + 3 * i) % classes) as i64)
        .collect();
    (
        images,
        Tensor::<1, Int>::from_data(TensorData::new(labels, [shape[0]]), device),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

    /// The cut graph's parameter gradients equal the uncut graph's (LeNet).
    #[test]
    fn cut_graph_gives_lenet_the_same_gradients(seed in any::<u64>(), batch in 1usize..6) {
        let device = Device::flex().autodiff();
        device.seed(seed);
        let model = LeNet::mnist(&device);
        let (images, labels) = random_batch(&device, [batch, 1, 28, 28], 10, seed);
        let (loss_plain, plain) = loss_and_grads(&model, images.clone(), labels.clone(), TapDetail::Off);
        let (loss_cut, cut) = loss_and_grads(&model, images.clone(), labels.clone(), TapDetail::Full);
        prop_assert!((loss_plain - loss_cut).abs() <= 1e-6 * loss_plain.abs().max(1.0));
        assert_same_grads(&plain, &cut)?;
        let (_, timing) = loss_and_grads(&model, images, labels, TapDetail::Timing);
        assert_same_grads(&plain, &timing)?;
    }

    /// The same for a residual block (the shortcut carries the input past two convolutions).
    #[test]
    fn cut_graph_gives_a_residual_block_the_same_gradients(seed in any::<u64>(), batch in 2usize..5) {
        let device = Device::flex().autodiff();
        device.seed(seed);
        let model = ResidualNet { block: BasicBlock::new(16, 32, 2, &device), head: LinearConfig::new(32 * 4 * 4, 10).init(&device) };
        let (images, labels) = random_batch(&device, [batch, 16, 8, 8], 10, seed);
        let (_, plain) = loss_and_grads(&model, images.clone(), labels.clone(), TapDetail::Off);
        let (_, cut) = loss_and_grads(&model, images, labels, TapDetail::Full);
        prop_assert!(cut.contains_key("block.conv1.weight") && cut.contains_key("block.bn2.gamma"));
        assert_same_grads(&plain, &cut)?;
    }
}

#[test]
fn a_planted_nan_shows_in_its_layer_and_not_before() {
    let device = Device::flex().autodiff();
    device.seed(1);
    let (model, planted) = plant_nan(LeNet::mnist(&device), |path| path == "conv2.weight");
    assert_eq!(planted, 1);
    let (images, labels) = random_batch(&device, [4, 1, 28, 28], 10, 1);
    let mut tap = Tap::new(TapDetail::Full);
    let logits = model.forward_tapped(images, &mut tap);
    let ce = CrossEntropyLossConfig::new().init(&device);
    let loss = tap.layer("loss", "SoftmaxWithLoss", logits, |l| ce.forward(l, labels));
    let (_, trace) = tap.backward(loss, &model);
    let trace = trace.unwrap();
    for clean in ["conv1", "pool1"] {
        let data = trace.layer(clean).unwrap().data.unwrap();
        assert_eq!(
            (data.nan, data.inf),
            (0, 0),
            "{clean} should be clean: {data:?}"
        );
    }
    let conv2 = trace.layer("conv2").unwrap().data.unwrap();
    assert!(conv2.nan > 0, "conv2's data should hold the NaN: {conv2:?}");
    // One NaN weight poisons one output channel: 4 images x 8 x 8 values.
    assert_eq!(conv2.nan, 4 * 8 * 8);
    let weight = trace.param("conv2.weight").unwrap();
    assert_eq!(weight.value.unwrap().nan, 1);
    assert_eq!(weight.layer.as_deref(), Some("conv2"));
    assert_eq!(trace.param("conv1.weight").unwrap().value.unwrap().nan, 0);
}

#[test]
fn lenet_trace_has_every_layer_with_times_and_statistics() {
    let device = Device::flex().autodiff();
    device.seed(3);
    let model = LeNet::mnist(&device);
    assert_eq!(trainable_param_count(&model), 431_080);
    let (images, labels) = random_batch(&device, [8, 1, 28, 28], 10, 3);
    let mut tap = Tap::new(TapDetail::Full);
    tap.data_layer("data", &images, 0.001);
    let logits = model.forward_tapped(images, &mut tap);
    let ce = CrossEntropyLossConfig::new().init(&device);
    let loss = tap.layer("loss", "SoftmaxWithLoss", logits, |l| ce.forward(l, labels));
    let (_, trace) = tap.backward(loss, &model);
    let trace = trace.unwrap();
    let names: Vec<&str> = trace.layers.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "data", "conv1", "pool1", "conv2", "pool2", "ip1", "ip2", "loss"
        ]
    );
    assert_eq!(trace.layer("conv1").unwrap().output_shape, [8, 20, 24, 24]);
    assert_eq!(trace.layer("ip1").unwrap().output_shape, [8, 500]);
    for layer in &trace.layers[1..] {
        assert!(layer.forward_seconds > 0.0, "{}", layer.name);
        assert!(layer.backward_seconds > 0.0, "{}", layer.name);
        let data = layer.data.unwrap();
        let diff = layer.diff.unwrap();
        assert!(data.is_finite() && diff.is_finite(), "{}", layer.name);
        assert!(data.min <= data.mean && data.mean <= data.max);
        assert!(diff.mean_abs > 0.0, "{} got no gradient", layer.name);
    }
    // ReLU'd blob: nothing negative.
    assert!(trace.layer("ip1").unwrap().data.unwrap().min >= 0.0);
    // The loss layer's diff is the loss weight, 1.
    let top = trace.layer("loss").unwrap().diff.unwrap();
    assert_eq!((top.min, top.max), (1.0, 1.0));
    let names: Vec<&str> = trace.params.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "conv1.weight",
            "conv1.bias",
            "conv2.weight",
            "conv2.bias",
            "ip1.weight",
            "ip1.bias",
            "ip2.weight",
            "ip2.bias"
        ]
    );
    for p in &trace.params {
        assert!(p.grad.unwrap().mean_abs > 0.0, "{}", p.name);
        assert_eq!(p.layer.as_deref(), Some(p.name.split('.').next().unwrap()));
    }
}

/// ResNet-20 forward and backward through the tap on real CIFAR-10 images.
#[test]
fn resnet20_runs_through_the_tap_on_a_cifar10_batch() {
    let device = Device::flex().autodiff();
    device.seed(5);
    let model = ResNet20::cifar10(&device);
    assert_eq!(trainable_param_count(&model), 269_722);
    let exact =
        bundled::cifar10_exact(&LoadOptions::default().with_cache(bundled::workspace_cache()))
            .unwrap();
    let batcher = Batcher::new(8, 5, bundled::resnet20_normalization()).in_order();
    let host = batcher
        .assemble(&exact, &(0..8).collect::<Vec<_>>())
        .unwrap();
    let batch = batcher.to_tensors(&host, &device).unwrap();
    let mut tap = Tap::new(TapDetail::Full);
    let logits = model.forward_tapped(batch.images, &mut tap);
    assert_eq!(logits.dims(), [8, 10]);
    let ce = CrossEntropyLossConfig::new().init(&device);
    let loss = tap.layer("loss", "SoftmaxWithLoss", logits, |l| {
        ce.forward(l, batch.labels)
    });
    let (grads, trace) = tap.backward(loss, &model);
    let trace = trace.unwrap();
    let names: Vec<&str> = trace.layers.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "conv1", "layer1.0", "layer1.1", "layer1.2", "layer2.0", "layer2.1", "layer2.2",
            "layer3.0", "layer3.1", "layer3.2", "pool", "linear", "loss"
        ]
    );
    assert_eq!(
        trace.layer("layer2.0").unwrap().output_shape,
        [8, 32, 16, 16]
    );
    assert_eq!(trace.layer("layer3.2").unwrap().output_shape, [8, 64, 8, 8]);
    for layer in &trace.layers {
        assert!(
            layer.backward_seconds > 0.0 && layer.diff.unwrap().mean_abs > 0.0,
            "{}",
            layer.name
        );
    }
    assert_eq!(
        trace.param("bn1.gamma").unwrap().layer.as_deref(),
        Some("conv1")
    );
    assert_eq!(
        trace.param("layer2.0.bn2.beta").unwrap().layer.as_deref(),
        Some("layer2.0")
    );
    // conv1, bn1 (2), six per block, linear (2): the 59 trainable tensors of the PyTorch file's 97.
    assert_eq!(grads_by_name(&model, &grads).len(), 1 + 2 + 9 * 6 + 2);
}
