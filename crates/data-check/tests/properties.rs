//! Properties of the measures and the map, and the typed errors for requests that cannot run.

use data_check::{DataCheck, DataCheckError, TsneParams, knn, means, separability, tsne};
use model_core::{Dataset, InMemory, SampleShape};
use ndarray::Array2;
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;

fn names(c: usize) -> Vec<String> {
    (0..c).map(|i| format!("c{i}")).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Classes far apart, each with more than k members: every vote is right.
    #[test]
    fn knn_accuracy_of_separated_classes_is_one(
        classes in 2usize..7,
        per_class in 11usize..30,
        seed in any::<u64>(),
        dims in 2usize..12,
    ) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let n = classes * per_class;
        let labels: Vec<u8> = (0..n).map(|i| (i % classes) as u8).collect();
        let x = Array2::from_shape_fn((n, dims), |(i, j)| {
            let centre = if j == 0 { 100.0 * (i % classes) as f32 } else { 0.0 };
            centre + rng.random::<f32>()
        });
        let s = separability::separability(&knn::knn(x.view(), 10), &labels, &names(classes), &|i| i);
        prop_assert_eq!(s.accuracy, 1.0);
        prop_assert!(s.candidate_label_errors.is_empty());
        prop_assert!(s.confusable_pairs.is_empty());
        prop_assert!(s.per_label.iter().all(|l| l.accuracy == 1.0));
    }

    /// Labels drawn independently of the positions: the vote is right about 1 / classes of the
    /// time.
    #[test]
    fn knn_accuracy_of_labels_independent_of_positions_is_near_one_over_classes(
        classes in 2usize..8,
        seed in any::<u64>(),
    ) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let n = 3000;
        let x = Array2::from_shape_fn((n, 2), |_| rng.random::<f32>());
        let labels: Vec<u8> = (0..n).map(|_| rng.random_range(0..classes) as u8).collect();
        let s = separability::separability(&knn::knn(x.view(), 10), &labels, &names(classes), &|i| i);
        let expected = 1.0 / classes as f64;
        prop_assert!((s.accuracy - expected).abs() < 0.05, "accuracy {} for {} classes", s.accuracy, classes);
        let chance = separability::chance(&labels, classes);
        prop_assert!(data_check::lift(s.accuracy, chance) < 0.10);
    }

    /// A class whose samples all hold one value has that value as its mean image, and its range
    /// is that value alone.
    #[test]
    fn mean_images_of_constant_classes_equal_the_constant(
        values in prop::collection::vec(any::<u8>(), 1..6),
        per_class in 1usize..5,
        channels in prop::sample::select(vec![1usize, 3]),
        side in 1usize..6,
    ) {
        let shape = SampleShape::new(channels, side, side);
        let classes = values.len();
        let labels: Vec<u8> = (0..classes * per_class).map(|i| (i % classes) as u8).collect();
        let pixels: Vec<u8> = labels.iter().flat_map(|&l| std::iter::repeat_n(values[l as usize], shape.len())).collect();
        let m = means::mean_images(&pixels, shape, &labels, classes);
        for (l, img) in m.per_label.iter().enumerate() {
            prop_assert_eq!(img.count, per_class);
            prop_assert!(img.pixels.iter().all(|&p| p == values[l] as f32));
            let st = means::stats(img, "");
            prop_assert_eq!(st.min, values[l] as f64);
            prop_assert_eq!(st.max, values[l] as f64);
            prop_assert_eq!(st.std, 0.0);
        }
        // model-core's mean images of the same samples agree.
        let source = Arc::new(InMemory::new(shape, pixels, "test").unwrap());
        let ds = Dataset::new("constant", names(classes), source, labels).unwrap();
        let theirs = ds.mean_images().unwrap();
        prop_assert_eq!(&theirs.per_label, &m.per_label);
        let summary = means::summarize(&m, &names(classes));
        for d in &summary.distances {
            let diff = (values[d.a as usize] as f64 - values[d.b as usize] as f64).abs();
            prop_assert!((d.rms - diff).abs() < 1e-9);
        }
    }
}

fn blobs(n: usize, dims: usize, classes: usize, seed: u64) -> (Array2<f32>, Vec<u8>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let centres: Vec<Vec<f32>> = (0..classes)
        .map(|_| {
            (0..dims)
                .map(|_| 4.0 * (rng.random::<f32>() - 0.5))
                .collect()
        })
        .collect();
    let labels: Vec<u8> = (0..n).map(|i| (i % classes) as u8).collect();
    let x = Array2::from_shape_fn((n, dims), |(i, j)| {
        centres[labels[i] as usize][j] + rng.random::<f32>() - 0.5
    });
    (x, labels)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4, ..ProptestConfig::default() })]

    /// The same seed gives the same map, bit for bit, with one thread or two.
    #[test]
    fn the_embedding_is_deterministic_for_a_seed(seed in any::<u64>(), n in 30usize..120) {
        let (x, _) = blobs(n, 8, 3, seed);
        let params = TsneParams { seed, early_iterations: 50, iterations: 60, ..TsneParams::default() };
        let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        let two = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        let a = one.install(|| tsne::tsne(x.view(), &params, &|_| {})).unwrap();
        let b = two.install(|| tsne::tsne(x.view(), &params, &|_| {})).unwrap();
        let c = two.install(|| tsne::tsne(x.view(), &params, &|_| {})).unwrap();
        prop_assert_eq!(&a.embedding, &b.embedding);
        prop_assert_eq!(&b.embedding, &c.embedding);
        prop_assert!(a.embedding.iter().all(|v| v.is_finite()));
    }
}

fn constant_dataset(n: usize, classes: usize) -> Dataset {
    let shape = SampleShape::new(1, 4, 4);
    let labels: Vec<u8> = (0..n).map(|i| (i % classes.max(1)) as u8).collect();
    let pixels: Vec<u8> = (0..n * shape.len()).map(|i| (i * 7 % 251) as u8).collect();
    let source = Arc::new(InMemory::new(shape, pixels, "test").unwrap());
    Dataset::new("small", names(classes), source, labels).unwrap()
}

#[test]
fn a_request_over_the_memory_budget_is_refused_with_the_largest_sample_that_fits() {
    let ds = constant_dataset(400, 4);
    let check = DataCheck::builder()
        .points(400)
        .memory_budget(20 << 20)
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    match check.run(&ds, dir.path()) {
        Err(DataCheckError::TooLarge {
            points,
            estimated_bytes,
            budget_bytes,
            max_points,
            ..
        }) => {
            assert_eq!(points, 400);
            assert!(estimated_bytes > budget_bytes);
            assert!(max_points < 400, "{max_points}");
        }
        Ok(_) => panic!("expected TooLarge, got a map"),
        Err(other) => panic!("expected TooLarge, got {other}"),
    }
    assert!(matches!(
        check.estimate(&ds),
        Err(DataCheckError::TooLarge { .. })
    ));
    // Nothing was written.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    // A million CIFAR-sized points do not fit 1 GiB either.
    let est = data_check::estimate::estimate(1_000_000, 3072, 50, &TsneParams::default(), 0);
    assert!(est.bytes > 1 << 30);
}

#[test]
fn an_empty_dataset_is_an_error() {
    let shape = SampleShape::new(1, 2, 2);
    let source = Arc::new(InMemory::new(shape, Vec::new(), "empty").unwrap());
    let ds = Dataset::new("empty", names(2), source, Vec::new()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let check = DataCheck::builder().build().unwrap();
    assert!(matches!(
        check.run(&ds, dir.path()),
        Err(DataCheckError::Empty)
    ));
    assert!(matches!(check.estimate(&ds), Err(DataCheckError::Empty)));
    let x = Array2::<f32>::zeros((0, 3));
    assert!(matches!(
        check.run_features(x.view(), &[], &[], dir.path()),
        Err(DataCheckError::Empty)
    ));
    assert!(matches!(
        tsne::tsne(x.view(), &TsneParams::default(), &|_| {}),
        Err(DataCheckError::Empty)
    ));
}

#[test]
fn mismatched_labels_too_few_points_and_bad_values_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let check = DataCheck::builder().build().unwrap();
    let x = Array2::<f32>::zeros((20, 3));
    assert!(matches!(
        check.run_features(x.view(), &[0; 19], &[], dir.path()),
        Err(DataCheckError::LabelCount {
            labels: 19,
            points: 20
        })
    ));
    assert!(matches!(
        check.run_features(x.view(), &[3; 20], &names(2), dir.path()),
        Err(DataCheckError::LabelOutOfRange {
            label: 3,
            classes: 2
        })
    ));
    let mut bad = Array2::<f32>::zeros((20, 3));
    bad[[4, 1]] = f32::NAN;
    assert!(matches!(
        check.run_features(bad.view(), &[0; 20], &[], dir.path()),
        Err(DataCheckError::NonFinite {
            row: 4,
            column: 1,
            ..
        })
    ));
    let tiny = Array2::<f32>::zeros((3, 3));
    assert!(matches!(
        check.run_features(tiny.view(), &[0; 3], &[], dir.path()),
        Err(DataCheckError::TooFew { points: 3, .. })
    ));
    for b in [
        DataCheck::builder().perplexity(f64::NAN),
        DataCheck::builder().perplexity(-1.0),
        DataCheck::builder().theta(-0.5),
        DataCheck::builder().learning_rate(0.0),
        DataCheck::builder().k(0),
        DataCheck::builder().pca_dims(0),
        DataCheck::builder().points(0),
        DataCheck::builder().iterations(0, 0),
        DataCheck::builder().pass_accuracy(1.5),
        DataCheck::builder().artifact_dir("../outside"),
    ] {
        assert!(matches!(
            b.build(),
            Err(DataCheckError::InvalidParameter { .. })
        ));
    }
}

#[test]
fn raw_features_are_mapped_and_judged() {
    // Layer activations stand-in: three well separated blobs in 16 dimensions.
    let (x, labels) = blobs(300, 16, 3, 5);
    let dir = tempfile::tempdir().unwrap();
    let check = DataCheck::builder()
        .points(240)
        .iterations(100, 200)
        .build()
        .unwrap();
    let o = check
        .run_features(x.view(), &labels, &[], dir.path())
        .unwrap();
    assert_eq!(o.points(), 240);
    assert_eq!(o.embedding.dim(), (240, 2));
    assert!(o.mean_images.is_none());
    assert!(o.separability_pca.accuracy > 0.95);
    assert!(
        o.separability_2d.accuracy > 0.9,
        "{}",
        o.separability_2d.accuracy
    );
    assert_eq!(o.verdict, model_core::Verdict::Pass);
    for a in &o.artifacts {
        assert!(dir.path().join(a).is_file(), "{a}");
    }
    assert_eq!(o.artifacts, vec!["data/map.png", "data/map.svg"]);
}

#[test]
fn degenerate_inputs_do_not_panic() {
    let dir = tempfile::tempdir().unwrap();
    let check = DataCheck::builder().iterations(30, 30).build().unwrap();
    // Every row the same.
    let same = Array2::<f32>::zeros((40, 3));
    let labels: Vec<u8> = (0..40).map(|i| (i % 2) as u8).collect();
    let o = check
        .run_features(same.view(), &labels, &[], dir.path())
        .unwrap();
    assert!(o.embedding.iter().all(|v| v.is_finite()));
    // Huge magnitudes and a single class.
    let huge = Array2::from_shape_fn((30, 4), |(i, j)| ((i * 4 + j) as f32) * 1e30);
    let _ = check.run_features(huge.view(), &[0; 30], &[], dir.path());
    // A learning rate far too large with no step limit.
    let wild = DataCheck::builder()
        .iterations(20, 20)
        .tsne(TsneParams {
            learning_rate: Some(1e300),
            max_step_norm: None,
            early_iterations: 20,
            iterations: 20,
            ..TsneParams::default()
        })
        .build()
        .unwrap();
    let (x, l) = blobs(50, 5, 2, 1);
    match wild.run_features(x.view(), &l, &[], dir.path()) {
        Ok(o) => assert!(o.embedding.iter().all(|v| v.is_finite())),
        Err(e) => assert!(matches!(e, DataCheckError::Diverged), "{e}"),
    }
}
