//! Batched occlusion equals one-window-at-a-time occlusion, and the incremental forward equals
//! Burn's; the batch size honours the memory budget; bad windows, strides, shapes, fills and targets are typed errors, never panics.

use std::cell::RefCell;

use burn::prelude::*;
use impact::{Fill, ImpactError, Input, Occlusion, Region, Target, Window, inside_share};
use model_core::inference::InferenceForward;
use model_core::models::{Classifier, LeNet, build_seeded};
use model_core::{Normalization, SampleShape};
use proptest::prelude::*;

fn lenet16() -> LeNet {
    build_seeded(&Device::flex(), 5, |d| {
        LeNet::new(SampleShape::new(1, 16, 16), 10, d)
    })
}

fn image16(seed: u64) -> Input {
    let pixels: Vec<u8> = (0..256u64)
        .map(|i| ((i * 37 + seed * 101) % 256) as u8)
        .collect();
    Input::from_pixels(
        &pixels,
        SampleShape::new(1, 16, 16),
        &Normalization::mnist(),
    )
    .unwrap()
}

fn close(a: &[f32], b: &[f32], tol: f32) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| (x - y).abs() <= tol * (1.0 + x.abs().max(y.abs())))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Random window sizes and strides: the maps from batches (sized by a random budget) equal
    /// the maps from one window at a time, and no batch exceeds the budget's batch size.
    #[test]
    fn batched_maps_equal_one_at_a_time(
        window in 1usize..=9,
        stride in 1usize..=5,
        budget_samples in 1usize..=60,
        seed in 0u64..1000,
    ) {
        let model = lenet16();
        let device = Device::flex();
        let seen = RefCell::new(Vec::new());
        let forward = |x: Tensor<4>| {
            seen.borrow_mut().push(x.dims()[0]);
            model.forward(x)
        };
        let per_sample = 10_000;
        let batched = Occlusion::builder()
            .window(window)
            .stride(stride)
            .normalization(Normalization::mnist())
            .sample_bytes(per_sample)
            .memory_budget(budget_samples * per_sample + per_sample / 2)
            .build()
            .unwrap();
        let single = Occlusion::builder()
            .window(window)
            .stride(stride)
            .normalization(Normalization::mnist())
            .max_batch(1)
            .build()
            .unwrap();
        let input = image16(seed);
        let a = batched.occlude(&forward, &input, &device).unwrap();
        let sizes = seen.take();
        let b = single.occlude(&forward, &input, &device).unwrap();
        let ia = batched.inverse(&forward, &input, &device).unwrap();
        let ib = single.inverse(&forward, &input, &device).unwrap();
        let ma = batched.model_impact(&forward, &input, &device).unwrap();
        let mb = single.model_impact(&forward, &input, &device).unwrap();

        let windows = ((16 - window) / stride + 1).pow(2);
        prop_assert_eq!(a.stats.windows, windows);
        prop_assert_eq!(a.target, b.target);
        prop_assert!(close(&a.probability_drop.values, &b.probability_drop.values, 1e-4));
        prop_assert!(close(&a.logit_drop.values, &b.logit_drop.values, 1e-4));
        prop_assert!(close(&ia.probability.values, &ib.probability.values, 1e-4));
        prop_assert!(close(&ma.strength.values, &mb.strength.values, 1e-4));
        // The budget: every batch at most budget / sample bytes, all windows sent once.
        prop_assert!(sizes.iter().all(|&n| n <= budget_samples), "{:?}", sizes);
        prop_assert_eq!(sizes.iter().sum::<usize>(), windows + 1);
        prop_assert_eq!(a.stats.batch_size, budget_samples.min(windows + 1));
        prop_assert_eq!(b.stats.batch_size, 1);
        prop_assert_eq!(b.stats.forward_calls, windows + 1);
    }

    /// The lowered, incremental forward (each copy recomputed only where its window reaches,
    /// from the reference input's activations) gives the maps of Burn's forward, batched and one
    /// window at a time, in all three modes.
    #[test]
    fn incremental_maps_equal_burns(
        window in 1usize..=9,
        stride in 1usize..=5,
        seed in 0u64..1000,
    ) {
        let model = lenet16();
        let device = Device::flex();
        let burn = |x: Tensor<4>| model.forward(x);
        let incremental = InferenceForward::new(&model, &device);
        prop_assert!(incremental.is_lowered());
        let input = image16(seed);
        for cap in [usize::MAX, 1] {
            let occlusion = Occlusion::builder()
                .window(window)
                .stride(stride)
                .normalization(Normalization::mnist())
                .max_batch(cap)
                .build()
                .unwrap();
            let a = occlusion.occlude(&incremental, &input, &device).unwrap();
            let b = occlusion.occlude(&burn, &input, &device).unwrap();
            prop_assert_eq!(a.target, b.target);
            prop_assert!(close(&a.probability_drop.values, &b.probability_drop.values, 1e-4));
            prop_assert!(close(&a.logit_drop.values, &b.logit_drop.values, 1e-4));
            let ia = occlusion.inverse(&incremental, &input, &device).unwrap();
            let ib = occlusion.inverse(&burn, &input, &device).unwrap();
            prop_assert!(close(&ia.probability.values, &ib.probability.values, 1e-4));
            prop_assert!((ia.fill_probability - ib.fill_probability).abs() < 1e-4);
            let ma = occlusion.model_impact(&incremental, &input, &device).unwrap();
            let mb = occlusion.model_impact(&burn, &input, &device).unwrap();
            prop_assert!(close(&ma.strength.values, &mb.strength.values, 1e-4));
            prop_assert!(close(&ma.window_rise, &mb.window_rise, 1e-4));
        }
    }

    /// Any window and stride: either a map at input resolution or a typed error.
    #[test]
    fn any_geometry_gives_a_map_or_a_typed_error(
        h in 1usize..12, w in 1usize..12, wh in 0usize..14, ww in 0usize..14, sy in 0usize..4, sx in 0usize..4,
    ) {
        let device = Device::flex();
        let weights = Tensor::<2>::ones([h * w, 3], &device);
        let forward = |x: Tensor<4>| x.flatten::<2>(1, 3).matmul(weights.clone());
        let input = Input::grid(h, w, (0..h * w).map(|i| i as f32).collect()).unwrap();
        let built = Occlusion::builder().window_rect(wh, ww).strides(sy, sx).build();
        match built.and_then(|o| o.occlude(&forward, &input, &device)) {
            Ok(maps) => {
                prop_assert!(wh >= 1 && ww >= 1 && wh <= h && ww <= w && sy >= 1 && sx >= 1);
                prop_assert_eq!((maps.probability_drop.height, maps.probability_drop.width), (h, w));
            }
            Err(ImpactError::Window { .. }) => prop_assert!(wh == 0 || ww == 0 || wh > h || ww > w),
            Err(ImpactError::Stride { .. }) => prop_assert!(sy == 0 || sx == 0),
            Err(e) => prop_assert!(false, "unexpected error {e}"),
        }
    }
}

/// Non-image data (a 1 x H x W grid) through a closure: the cell that carries the logit is where
/// the occlusion map peaks.
#[test]
fn a_grid_of_values_is_mapped_too() {
    let device = Device::flex();
    let (h, w) = (7, 9);
    // Logit 0 reads cell (2, 6) only; logit 1 is constant.
    let mut weights = vec![0f32; h * w * 2];
    weights[(2 * w + 6) * 2] = 3.0;
    let weights = Tensor::<2>::from_data(TensorData::new(weights, [h * w, 2]), &device);
    let forward = |x: Tensor<4>| x.flatten::<2>(1, 3).matmul(weights.clone());
    let input = Input::grid(h, w, vec![1.0; h * w]).unwrap();
    let occlusion = Occlusion::builder().window(1).stride(1).build().unwrap();
    let maps = occlusion.occlude(&forward, &input, &device).unwrap();
    assert_eq!(maps.target, 0);
    assert_eq!(maps.probability_drop.argmax(), (2, 6));
    assert!((maps.logit_drop.get(2, 6) - 3.0).abs() < 1e-6);
    assert_eq!(
        maps.logit_drop
            .values
            .iter()
            .filter(|v| v.abs() > 1e-6)
            .count(),
        1
    );
    let inverse = occlusion.inverse(&forward, &input, &device).unwrap();
    assert_eq!(inverse.probability.argmax(), (2, 6));
    let impact = occlusion.model_impact(&forward, &input, &device).unwrap();
    assert_eq!(
        impact.labels[2 * w + 6],
        0,
        "highlighting the cell raises label 0"
    );
}

#[test]
fn bad_input_is_a_typed_error() {
    let device = Device::flex();
    let model = lenet16();
    let forward = |x: Tensor<4>| model.forward(x);
    let input = image16(1);
    let o = |b: impact::OcclusionBuilder| b.normalization(Normalization::mnist()).build();

    assert!(matches!(
        Input::new(SampleShape::new(1, 16, 16), vec![0.0; 10]),
        Err(ImpactError::InputShape { .. })
    ));
    assert!(matches!(
        Input::grid(0, 4, vec![]),
        Err(ImpactError::InputShape { .. })
    ));
    assert!(matches!(
        Input::from_pixels(
            &[0; 256],
            SampleShape::new(1, 16, 16),
            &Normalization::cifar10()
        ),
        Err(ImpactError::InputShape { .. })
    ));
    assert!(matches!(
        o(Occlusion::builder().window(0)),
        Err(ImpactError::Window { .. })
    ));
    assert!(matches!(
        o(Occlusion::builder().stride(0)),
        Err(ImpactError::Stride { .. })
    ));
    assert!(matches!(
        o(Occlusion::builder().memory_budget(0)),
        Err(ImpactError::Option { .. })
    ));
    let big = o(Occlusion::builder().window(17)).unwrap();
    assert!(matches!(
        big.occlude(&forward, &input, &device),
        Err(ImpactError::Window { .. })
    ));
    let rgb_fill = o(Occlusion::builder()
        .window(4)
        .fill(Fill::PerChannel(vec![0.0; 3])))
    .unwrap();
    assert!(matches!(
        rgb_fill.occlude(&forward, &input, &device),
        Err(ImpactError::Fill { .. })
    ));
    let nan_fill = o(Occlusion::builder().window(4).fill(Fill::Value(f32::NAN))).unwrap();
    assert!(matches!(
        nan_fill.inverse(&forward, &input, &device),
        Err(ImpactError::Fill { .. })
    ));
    let target = o(Occlusion::builder().window(4).target(Target::Label(10))).unwrap();
    assert!(matches!(
        target.occlude(&forward, &input, &device),
        Err(ImpactError::Target {
            target: 10,
            classes: 10
        })
    ));
    // A "model" that drops a row of its batch.
    let bad = |x: Tensor<4>| {
        let n = x.dims()[0];
        Tensor::<2>::zeros([n + 1, 3], &x.device())
    };
    let ok = o(Occlusion::builder().window(4)).unwrap();
    assert!(matches!(
        ok.occlude(&bad, &input, &device),
        Err(ImpactError::Model { .. })
    ));
}

#[test]
fn black_is_the_normalised_zero_and_the_window_geometry_matches_captum() {
    let black = Fill::Black
        .resolve(3, Some(&Normalization::cifar10()))
        .unwrap();
    assert!((black[0] - (-0.4914 / 0.2470)).abs() < 1e-6);
    assert_eq!(Fill::Black.resolve(1, None).unwrap(), vec![0.0]);
    assert_eq!(Window::square(6, 2).grid(28, 28).unwrap(), [12, 12]);
    assert_eq!(Window::square(8, 2).grid(32, 32).unwrap(), [13, 13]);
    assert_eq!(Window::square(8, 2).positions(32, 32).unwrap().len(), 169);
}

#[test]
fn regions_and_shares() {
    // A digit-like blob at rows 5..10, columns 3..8 of a 12x12 image.
    let mut pixels = vec![0f32; 144];
    for y in 5..10 {
        for x in 3..8 {
            pixels[y * 12 + x] = 200.0;
        }
    }
    let rect = Region::default().locate(&pixels, 1, 12, 12);
    assert_eq!(
        (rect.top, rect.left, rect.bottom, rect.right),
        (5, 3, 10, 8)
    );
    let border = Region::Border { band: 2 }.locate(&pixels, 3, 12, 4);
    assert_eq!(
        (border.top, border.left, border.bottom, border.right),
        (2, 1, 10, 3)
    );
    let map = impact::Map {
        height: 12,
        width: 12,
        values: pixels
            .iter()
            .map(|&p| if p > 0.0 { 1.0 } else { -1.0 })
            .collect(),
    };
    assert_eq!(inside_share(&map, &rect), 1.0);
    let none = impact::Map {
        height: 12,
        width: 12,
        values: vec![0.0; 144],
    };
    assert_eq!(inside_share(&none, &rect), 1.0);
}

/// The activation estimate of a real model: LeNet's traced outputs (about 19,000 values per
/// sample) and its input, in f32, doubled; the default budget then sends 144 windows at once.
#[test]
fn the_sample_estimate_follows_the_model() {
    let device = Device::flex();
    let model = build_seeded(&device, 1, LeNet::mnist);
    let bytes = impact::estimate_sample_bytes(&model, &device);
    let values = 784 + 20 * 24 * 24 + 20 * 12 * 12 + 50 * 8 * 8 + 50 * 4 * 4 + 500 + 10;
    assert_eq!(bytes, values * 4 * 2);
    let occlusion = Occlusion::builder().sample_bytes(bytes).build().unwrap();
    assert!(occlusion.batch_size(SampleShape::new(1, 28, 28)) >= 144);
    let tight = Occlusion::builder()
        .sample_bytes(bytes)
        .memory_budget(10 * bytes)
        .build()
        .unwrap();
    assert_eq!(tight.batch_size(SampleShape::new(1, 28, 28)), 10);
}
