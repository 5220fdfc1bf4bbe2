//! Separability measured, not only drawn.
//!
//! Exists so the verdict rests on numbers: the k-NN label accuracy (majority vote of the `k`
//! nearest neighbours, k = 10) overall and per label, the confusion it implies and the label pairs
//! that mix most, the samples whose neighbours all carry another label (candidate label errors),
//! the per-label silhouette, and the chance level a label-blind guess reaches.

use rayon::prelude::*;
use serde::Serialize;

use crate::knn::Neighbors;

/// k-NN accuracy of one label.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LabelAccuracy {
    pub label: u8,
    pub name: String,
    pub count: usize,
    pub accuracy: f64,
}

/// Two labels that the neighbours mix up.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConfusablePair {
    pub a: u8,
    pub b: u8,
    pub a_name: String,
    pub b_name: String,
    /// Samples of `a` voted `b` plus samples of `b` voted `a`.
    pub mixed: usize,
    /// `mixed` over the samples of both labels.
    pub rate: f64,
}

/// A sample none of whose neighbours shares its label.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CandidateLabelError {
    /// Position in the mapped points.
    pub point: usize,
    /// Index in the dataset (the point's position when mapping raw features).
    pub index: usize,
    pub label: u8,
    /// The label most of its neighbours carry.
    pub neighbours_label: u8,
}

/// k-NN label agreement in one space.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Separability {
    pub k: usize,
    /// Share of points whose neighbours' majority label is their own.
    pub accuracy: f64,
    pub per_label: Vec<LabelAccuracy>,
    /// `confusion[true][voted]` counts.
    pub confusion: Vec<Vec<usize>>,
    /// Pairs with any mixing, most mixed first.
    pub confusable_pairs: Vec<ConfusablePair>,
    /// Candidate label errors, in point order.
    pub candidate_label_errors: Vec<CandidateLabelError>,
}

/// The accuracy of a label-blind guess: the largest label's share.
pub fn chance(labels: &[u8], num_classes: usize) -> f64 {
    if labels.is_empty() {
        return 0.0;
    }
    let counts = counts(labels, num_classes);
    *counts.iter().max().unwrap_or(&0) as f64 / labels.len() as f64
}

fn counts(labels: &[u8], num_classes: usize) -> Vec<usize> {
    let classes = num_classes.max(labels.iter().map(|&l| l as usize + 1).max().unwrap_or(0));
    let mut c = vec![0usize; classes];
    for &l in labels {
        c[l as usize] += 1;
    }
    c
}

/// The majority label of a point's neighbours; ties go to the label of the nearest among them.
fn vote(neigh: &[u32], labels: &[u8], tally: &mut [u32]) -> u8 {
    tally.iter_mut().for_each(|t| *t = 0);
    for &j in neigh {
        tally[labels[j as usize] as usize] += 1;
    }
    let best = tally.iter().copied().max().unwrap_or(0);
    neigh
        .iter()
        .map(|&j| labels[j as usize])
        .find(|&l| tally[l as usize] == best)
        .unwrap_or(0)
}

/// Separability from each point's nearest neighbours (nearest first). `names` names the labels;
/// `dataset_index` maps a point to its dataset index.
pub fn separability(
    nb: &Neighbors,
    labels: &[u8],
    names: &[String],
    dataset_index: &dyn Fn(usize) -> usize,
) -> Separability {
    let n = labels.len().min(nb.len());
    let classes = counts(labels, names.len()).len();
    let name = |l: u8| {
        names
            .get(l as usize)
            .cloned()
            .unwrap_or_else(|| l.to_string())
    };
    let votes: Vec<u8> = (0..n)
        .into_par_iter()
        .map_init(
            || vec![0u32; classes],
            |tally, i| vote(nb.of(i), labels, tally),
        )
        .collect();
    let mut confusion = vec![vec![0usize; classes]; classes];
    for (i, &v) in votes.iter().enumerate() {
        confusion[labels[i] as usize][v as usize] += 1;
    }
    let correct: usize = (0..classes).map(|c| confusion[c][c]).sum();
    let accuracy = if n > 0 {
        correct as f64 / n as f64
    } else {
        0.0
    };
    let per_label: Vec<LabelAccuracy> = (0..classes)
        .map(|c| {
            let count: usize = confusion[c].iter().sum();
            LabelAccuracy {
                label: c as u8,
                name: name(c as u8),
                count,
                accuracy: if count > 0 {
                    confusion[c][c] as f64 / count as f64
                } else {
                    f64::NAN
                },
            }
        })
        .collect();
    let mut confusable_pairs = Vec::new();
    for a in 0..classes {
        for b in a + 1..classes {
            let mixed = confusion[a][b] + confusion[b][a];
            if mixed == 0 {
                continue;
            }
            let both = per_label[a].count + per_label[b].count;
            confusable_pairs.push(ConfusablePair {
                a: a as u8,
                b: b as u8,
                a_name: name(a as u8),
                b_name: name(b as u8),
                mixed,
                rate: mixed as f64 / both.max(1) as f64,
            });
        }
    }
    confusable_pairs.sort_by(|x, y| {
        y.rate
            .total_cmp(&x.rate)
            .then(y.mixed.cmp(&x.mixed))
            .then((x.a, x.b).cmp(&(y.a, y.b)))
    });
    let candidate_label_errors = (0..n)
        .filter(|&i| {
            let own = labels[i];
            !nb.of(i).is_empty() && nb.of(i).iter().all(|&j| labels[j as usize] != own)
        })
        .map(|i| CandidateLabelError {
            point: i,
            index: dataset_index(i),
            label: labels[i],
            neighbours_label: votes[i],
        })
        .collect();
    Separability {
        k: nb.k,
        accuracy,
        per_label,
        confusion,
        confusable_pairs,
        candidate_label_errors,
    }
}

/// Silhouette of each label in a 2-D map.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Silhouette {
    /// Mean over the points measured.
    pub overall: f64,
    /// Mean per label (NaN for a label with no point measured).
    pub per_label: Vec<f64>,
    /// Points measured (every point up to 20,000; an even spread of them beyond).
    pub measured: usize,
}

/// Points the silhouette is measured on at most (it costs `n x measured` distances).
const SILHOUETTE_POINTS: usize = 20_000;

/// The silhouette `(b - a) / max(a, b)` of points of `coords` (`n x 2`, flattened), where `a` is
/// the mean distance to the other points of the same label and `b` the smallest mean distance to
/// another label's points. A label with a single point scores 0.
pub fn silhouette(coords: &[[f32; 2]], labels: &[u8], num_classes: usize) -> Silhouette {
    let n = coords.len().min(labels.len());
    let counts = counts(&labels[..n], num_classes);
    let classes = counts.len();
    let stride = n.div_ceil(SILHOUETTE_POINTS).max(1);
    let measured: Vec<usize> = (0..n).step_by(stride).collect();
    let scores: Vec<(u8, f64)> = measured
        .par_iter()
        .map_init(
            || vec![0f64; classes],
            |sums, &i| {
                sums.iter_mut().for_each(|s| *s = 0.0);
                let [xi, yi] = coords[i];
                for (c, &l) in coords[..n].iter().zip(labels) {
                    let dx = (c[0] - xi) as f64;
                    let dy = (c[1] - yi) as f64;
                    sums[l as usize] += (dx * dx + dy * dy).sqrt();
                }
                let own = labels[i] as usize;
                if counts[own] <= 1 {
                    return (labels[i], 0.0);
                }
                let a = sums[own] / (counts[own] - 1) as f64;
                let b = (0..classes)
                    .filter(|&c| c != own && counts[c] > 0)
                    .map(|c| sums[c] / counts[c] as f64)
                    .fold(f64::INFINITY, f64::min);
                if !b.is_finite() {
                    return (labels[i], 0.0);
                }
                let m = a.max(b);
                (labels[i], if m > 0.0 { (b - a) / m } else { 0.0 })
            },
        )
        .collect();
    let mut sum = vec![0f64; classes];
    let mut cnt = vec![0usize; classes];
    for &(l, s) in &scores {
        sum[l as usize] += s;
        cnt[l as usize] += 1;
    }
    let overall = if scores.is_empty() {
        f64::NAN
    } else {
        scores.iter().map(|s| s.1).sum::<f64>() / scores.len() as f64
    };
    Silhouette {
        overall,
        per_label: sum
            .iter()
            .zip(&cnt)
            .map(|(&s, &c)| if c > 0 { s / c as f64 } else { f64::NAN })
            .collect(),
        measured: scores.len(),
    }
}
