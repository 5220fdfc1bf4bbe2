//! The data check on the real bundled data: a stratified sample of the MNIST t10k images
//! separates (Pass) and writes its pictures and report; the same images with shuffled labels
//! fail; CIFAR-10's raw pixels separate far less (Warn), and the verdict names the mixed pairs.

use std::collections::BTreeMap;

use data_check::{DataCheck, step_report, with_shuffled_labels};
use model_core::bundled::{self, MnistSplit};
use model_core::{LoadOptions, LoadStrategy, Step, Verdict};

fn t10k() -> model_core::Dataset {
    let options = LoadOptions::new(LoadStrategy::LoadAll).with_cache(bundled::workspace_cache());
    bundled::mnist(MnistSplit::Test, &options).unwrap()
}

#[test]
fn a_stratified_mnist_sample_separates_and_shuffled_labels_fail() {
    let mnist = t10k();
    let dir = tempfile::tempdir().unwrap();
    let check = DataCheck::builder().points(1_500).seed(7).build().unwrap();
    let est = check.estimate(&mnist).unwrap();
    let o = check.run(&mnist, dir.path()).unwrap();
    eprintln!(
        "MNIST 1,500: 2-D {:.3}, PCA {:.3}, chance {:.3}, t-SNE {:.2} s, silhouette {:.3}, {} candidate label errors, closest means {:?}",
        o.separability_2d.accuracy,
        o.separability_pca.accuracy,
        o.chance,
        o.timings.tsne,
        o.silhouette.overall,
        o.separability_2d.candidate_label_errors.len(),
        o.mean_images.as_ref().and_then(|m| m.closest.clone()),
    );
    for f in &o.findings {
        eprintln!("  {} {} {}: {}", f.verdict, f.check, f.subject, f.message);
    }
    assert_eq!(o.points(), 1_500);
    assert_eq!(est.points, 1_500);
    // Stratified: every label keeps its share of the t10k set.
    let mut counts = BTreeMap::new();
    for &l in &o.labels {
        *counts.entry(l).or_insert(0usize) += 1;
    }
    assert_eq!(counts[&1], 170); // 1,135 of 10,000 ones
    assert!(
        o.separability_2d.accuracy > 0.88,
        "{}",
        o.separability_2d.accuracy
    );
    assert!(o.separability_pca.accuracy > 0.88);
    assert!((o.chance - 0.1133).abs() < 0.001, "{}", o.chance);
    assert!(o.silhouette.overall > 0.2);
    assert_eq!(o.verdict, Verdict::Pass);
    let means = o.mean_images.as_ref().unwrap();
    assert_eq!(means.stats.len(), 11);
    assert!(
        means
            .stats
            .iter()
            .all(|s| s.min >= 0.0 && s.max <= 255.0 && s.max > s.min)
    );
    assert_eq!(means.distances.len(), 45);
    // Candidate label errors are dataset indices of samples labelled otherwise than their
    // neighbours.
    for e in &o.separability_2d.candidate_label_errors {
        assert_eq!(mnist.label(e.index), e.label);
        assert_ne!(e.label, e.neighbours_label);
    }

    let r = step_report(&o);
    assert_eq!(r.step, Step::Data);
    assert_eq!(r.verdict, Verdict::Pass);
    for m in [
        "points",
        "knn_accuracy_2d",
        "knn_accuracy_pca",
        "chance",
        "tsne_seconds",
    ] {
        assert!(r.metrics.contains_key(m), "{m}");
    }
    assert_eq!(r.metrics["points"], 1_500.0);
    for a in ["data/map.png", "data/map.svg", "data/mean_images.png"] {
        assert!(r.artifacts.iter().any(|x| x == a), "{a}");
        assert!(dir.path().join(a).metadata().unwrap().len() > 1_000, "{a}");
    }
    let png = image::open(dir.path().join("data/map.png")).unwrap();
    assert!(png.width() >= 800);
    let svg = std::fs::read_to_string(dir.path().join("data/map.svg")).unwrap();
    assert!(svg.contains("<circle"));
    // The report serialises with the schema's shape.
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["step"], "data");
    assert!(json["details"]["per_label"].as_array().unwrap().len() == 10);

    // The same images with their labels shuffled: the map cannot separate them.
    let shuffled = with_shuffled_labels(&mnist, 11).unwrap();
    let s = check.run(&shuffled, dir.path()).unwrap();
    eprintln!(
        "MNIST 1,500 shuffled: 2-D {:.3}, PCA {:.3}, chance {:.3}",
        s.separability_2d.accuracy, s.separability_pca.accuracy, s.chance
    );
    assert_eq!(s.verdict, Verdict::Fail);
    assert!(s.separability_2d.accuracy < 0.16);
    let r = step_report(&s);
    assert_eq!(r.verdict, Verdict::Fail);
    assert!(
        r.findings
            .iter()
            .any(|f| f.check == "separability" && f.verdict == Verdict::Fail)
    );
}

#[test]
fn cifar10_raw_pixels_separate_poorly_and_the_verdict_says_so() {
    // On demand: only the sampled JPEGs are decoded.
    let options =
        LoadOptions::new(LoadStrategy::OnDemandNoCache).with_cache(bundled::workspace_cache());
    let cifar = bundled::cifar10_test(&options).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let check = DataCheck::builder().points(1_000).seed(1).build().unwrap();
    let o = check.run(&cifar, dir.path()).unwrap();
    eprintln!(
        "CIFAR-10 1,000: 2-D {:.3}, PCA {:.3}, chance {:.3}",
        o.separability_2d.accuracy, o.separability_pca.accuracy, o.chance
    );
    assert_eq!(o.verdict, Verdict::Warn);
    assert!(o.separability_2d.accuracy > 0.18 && o.separability_2d.accuracy < 0.5);
    assert_eq!(o.chance, 0.1);
    let sep = o
        .findings
        .iter()
        .find(|f| f.check == "separability")
        .unwrap();
    assert_eq!(sep.verdict, Verdict::Warn);
    assert!(sep.message.contains("most mixed"), "{}", sep.message);
    // RGB mean images: three channels of 32 x 32.
    let means = o.mean_images.as_ref().unwrap();
    assert_eq!(means.stats.len(), 11);
    assert!(dir.path().join("data/mean_images.png").is_file());
}
