//! The t-SNE of the MNIST t10k images, timed: the input the openTSNE comparison uses.
//!
//! Writes `pca50.npy` (the PCA-50 input, f32), `labels.npy` (u8) and `ours.npy` (our 2-D map,
//! f32) into the output folder, and prints one JSON line with our time, 10-NN accuracies, the
//! estimate and the peak resident memory. `benches/tsne/compare.sh` runs it, then openTSNE on
//! the same `pca50.npy`.
//!
//! ```sh
//! cargo run --release -p data-check --example tsne_bench -- [--points N] [--out DIR] [--seed S]
//! ```

use std::path::PathBuf;
use std::time::Instant;

use data_check::{TsneParams, estimate, knn, pca, separability, tsne};
use model_core::bundled::{self, MnistSplit};
use model_core::{LoadOptions, LoadStrategy};
use ndarray::Array2;

fn npy(path: &std::path::Path, descr: &str, shape: &[usize], data: &[u8]) -> std::io::Result<()> {
    let dims = shape.iter().map(|d| d.to_string()).collect::<Vec<_>>();
    let shape_txt = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header =
        format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_txt}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(data);
    std::fs::write(path, bytes)
}

fn f32_bytes(a: &Array2<f32>) -> Vec<u8> {
    a.as_standard_layout()
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut points = 10_000usize;
    let mut out = PathBuf::from("target/tsne-bench");
    let mut seed = 0u64;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--points" => points = args.next().ok_or("--points N")?.parse()?,
            "--out" => out = args.next().ok_or("--out DIR")?.into(),
            "--seed" => seed = args.next().ok_or("--seed S")?.parse()?,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    std::fs::create_dir_all(&out)?;
    let options = LoadOptions::new(LoadStrategy::LoadAll).with_cache(bundled::workspace_cache());
    let t10k = bundled::mnist(MnistSplit::Test, &options)?;
    let ds = if points < t10k.len() {
        t10k.stratified_subset(points, seed)?
    } else {
        t10k
    };
    let n = ds.len();
    let dims = ds.shape().len();
    let params = TsneParams {
        seed,
        ..TsneParams::default()
    };
    let est = estimate::estimate(n, dims, 50, &params, ds.source().resident_bytes() as u64);
    let mut pixels = vec![0u8; n * dims];
    let all: Vec<usize> = (0..n).collect();
    ds.read_samples(&all, &mut pixels)?;
    let x = Array2::from_shape_fn((n, dims), |(i, j)| pixels[i * dims + j] as f32 / 255.0);
    let labels = ds.labels().to_vec();

    let t = Instant::now();
    let fit = pca::fit(x.view(), 50, seed);
    let reduced = fit.transform(x.view());
    let pca_seconds = t.elapsed().as_secs_f64();
    npy(
        &out.join("pca50.npy"),
        "<f4",
        &[n, reduced.ncols()],
        &f32_bytes(&reduced),
    )?;
    npy(&out.join("labels.npy"), "|u1", &[n], &labels)?;

    let t = Instant::now();
    let map = tsne::tsne(reduced.view(), &params, &|_| {})?;
    let tsne_seconds = t.elapsed().as_secs_f64();
    npy(
        &out.join("ours.npy"),
        "<f4",
        &[n, 2],
        &f32_bytes(&map.embedding),
    )?;

    let names = ds.class_names().to_vec();
    let acc2d =
        separability::separability(&knn::knn(map.embedding.view(), 10), &labels, &names, &|i| i)
            .accuracy;
    let accpca =
        separability::separability(&knn::knn(reduced.view(), 10), &labels, &names, &|i| i).accuracy;
    let peak = estimate::peak_rss_bytes();
    println!(
        "{}",
        serde_json::json!({
            "points": n,
            "pca_seconds": pca_seconds,
            "pca_explained_ratio": fit.explained_ratio(),
            "tsne_seconds": tsne_seconds,
            "affinity_seconds": map.affinity_seconds,
            "kl_divergence": map.kl_divergence,
            "knn_accuracy_2d": acc2d,
            "knn_accuracy_pca": accpca,
            "threads": rayon::current_num_threads(),
            "estimated_bytes": est.bytes,
            "estimated_tsne_seconds": est.tsne_seconds,
            "peak_rss_bytes": peak,
        })
    );
    Ok(())
}
