//! Our Barnes-Hut t-SNE against linfa-tsne, the reference implementation, on small inputs:
//! the maps must keep the labels' neighbourhoods as well.

use data_check::{TsneParams, knn, separability, tsne};
use linfa::traits::Transformer;
use linfa_tsne::TSneParams;
use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// `classes` Gaussian blobs in `dims` dimensions that overlap a little.
fn blobs(n: usize, dims: usize, classes: usize, spread: f64, seed: u64) -> (Array2<f64>, Vec<u8>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut gauss = move || {
        let u1: f64 = rng.random::<f64>().max(1e-300);
        let u2: f64 = rng.random();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    };
    let centres: Vec<Vec<f64>> = (0..classes)
        .map(|_| (0..dims).map(|_| spread * gauss()).collect())
        .collect();
    let labels: Vec<u8> = (0..n).map(|i| (i % classes) as u8).collect();
    let x = Array2::from_shape_fn((n, dims), |(i, j)| centres[labels[i] as usize][j] + gauss());
    (x, labels)
}

fn accuracy(map: &Array2<f32>, labels: &[u8], classes: usize) -> f64 {
    let names: Vec<String> = (0..classes).map(|c| c.to_string()).collect();
    separability::separability(&knn::knn(map.view(), 10), labels, &names, &|i| i).accuracy
}

#[test]
fn maps_blobs_as_well_as_linfa_tsne() {
    for (seed, spread) in [(1u64, 1.0), (2, 0.7)] {
        let (x, labels) = blobs(400, 20, 5, spread, seed);
        let high = accuracy(&x.mapv(|v| v as f32), &labels, 5);

        let reference = TSneParams::embedding_size(2)
            .perplexity(30.0)
            .approx_threshold(0.5)
            .max_iter(1000)
            .transform(x.clone())
            .expect("linfa-tsne runs");
        let theirs = accuracy(&reference.mapv(|v| v as f32), &labels, 5);

        let ours = tsne::tsne(
            x.mapv(|v| v as f32).view(),
            &TsneParams {
                seed,
                ..TsneParams::default()
            },
            &|_| {},
        )
        .unwrap();
        let mine = accuracy(&ours.embedding, &labels, 5);
        eprintln!(
            "spread {spread}: 10-NN accuracy input {high:.3}, linfa-tsne {theirs:.3}, ours {mine:.3}"
        );
        assert!(
            mine >= theirs - 0.03,
            "ours {mine:.3} against linfa-tsne {theirs:.3}"
        );
        assert!(
            mine >= high - 0.05,
            "ours {mine:.3} against the input's {high:.3}"
        );
        assert!(ours.kl_divergence.is_finite() && ours.kl_divergence > 0.0);
    }
}

#[test]
fn exact_and_barnes_hut_forces_give_maps_of_the_same_quality() {
    let (x, labels) = blobs(300, 10, 4, 1.5, 9);
    let x = x.mapv(|v| v as f32);
    let run = |theta: f64| {
        let params = TsneParams {
            theta,
            seed: 3,
            ..TsneParams::default()
        };
        tsne::tsne(x.view(), &params, &|_| {}).unwrap()
    };
    let (exact, bh) = (run(0.0), run(0.5));
    let (a, b) = (
        accuracy(&exact.embedding, &labels, 4),
        accuracy(&bh.embedding, &labels, 4),
    );
    eprintln!(
        "exact: accuracy {a:.3}, KL {:.4}; Barnes-Hut: accuracy {b:.3}, KL {:.4}",
        exact.kl_divergence, bh.kl_divergence
    );
    assert!((a - b).abs() < 0.05, "exact {a:.3}, Barnes-Hut {b:.3}");
    assert!(
        (exact.kl_divergence - bh.kl_divergence).abs() < 0.05 * exact.kl_divergence.max(0.1),
        "KL exact {}, Barnes-Hut {}",
        exact.kl_divergence,
        bh.kl_divergence
    );
}
