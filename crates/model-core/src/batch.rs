//! From samples to tensors: seeded epoch order, batch assembly, normalisation.
//!
//! Assembly (reading a batch's bytes through the dataset's source) and conversion (normalising
//! into `f32` and moving to the device) are separate steps, so the data layer's time can be
//! measured as a whole and in parts.

use burn::prelude::*;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::dataset::Dataset;
use crate::error::{DataError, Result};

/// Per-channel normalisation, `(x / 255 - mean) / std`, mean and std in `[0, 1]` pixel units.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Normalization {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl Normalization {
    /// MNIST's customary figures (mean 0.1307, std 0.3081).
    pub fn mnist() -> Self {
        Normalization {
            mean: vec![0.1307],
            std: vec![0.3081],
        }
    }

    /// CIFAR-10's customary per-channel figures.
    pub fn cifar10() -> Self {
        Normalization {
            mean: vec![0.4914, 0.4822, 0.4465],
            std: vec![0.2470, 0.2435, 0.2616],
        }
    }

    /// No change beyond scaling to `[0, 1]`.
    pub fn unit(channels: usize) -> Self {
        Normalization {
            mean: vec![0.0; channels],
            std: vec![1.0; channels],
        }
    }

    /// The per-channel mean and standard deviation measured on `dataset`.
    pub fn measure(dataset: &Dataset) -> Result<Self> {
        let shape = dataset.shape();
        let plane = shape.plane();
        let mut sum = vec![0f64; shape.channels];
        let mut sq = vec![0f64; shape.channels];
        let mut buf = vec![0u8; shape.len()];
        for i in 0..dataset.len() {
            dataset.read_sample(i, &mut buf)?;
            for (c, p) in buf.chunks_exact(plane).enumerate() {
                for &v in p {
                    let x = v as f64 / 255.0;
                    sum[c] += x;
                    sq[c] += x * x;
                }
            }
        }
        let n = (dataset.len() * plane).max(1) as f64;
        let mean: Vec<f64> = sum.iter().map(|s| s / n).collect();
        let std = sq
            .iter()
            .zip(&mean)
            .map(|(s, m)| ((s / n - m * m).max(0.0)).sqrt().max(1e-6) as f32)
            .collect();
        Ok(Normalization {
            mean: mean.into_iter().map(|m| m as f32).collect(),
            std,
        })
    }
}

/// How batches are drawn from a dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Batcher {
    pub batch_size: usize,
    /// Shuffle the order each epoch (seeded by `seed` and the epoch number).
    pub shuffle: bool,
    pub seed: u64,
    /// Drop a last batch smaller than `batch_size`.
    pub drop_last: bool,
    pub normalization: Normalization,
}

/// One batch on the host: the dataset indices, their `N x C x H x W` bytes and labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostBatch {
    pub items: Vec<usize>,
    /// `[n, c, h, w]`.
    pub dims: [usize; 4],
    pub pixels: Vec<u8>,
    pub labels: Vec<u8>,
}

/// One batch as tensors on a device.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Normalised images, `[n, c, h, w]`.
    pub images: Tensor<4>,
    /// Labels, `[n]`.
    pub labels: Tensor<1, Int>,
}

/// The order of a dataset's samples in epoch `epoch`: `0..len` or a seeded shuffle of it.
pub fn epoch_order(len: usize, shuffle: bool, seed: u64, epoch: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..len).collect();
    if shuffle {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        order.shuffle(&mut rng);
    }
    order
}

impl Batcher {
    /// Batches of `batch_size`, shuffled with `seed`, kept last batch, normalised with `normalization`.
    pub fn new(batch_size: usize, seed: u64, normalization: Normalization) -> Self {
        Batcher {
            batch_size,
            shuffle: true,
            seed,
            drop_last: false,
            normalization,
        }
    }

    /// The same batcher without shuffling.
    pub fn in_order(mut self) -> Self {
        self.shuffle = false;
        self
    }

    /// The same batcher dropping a short last batch.
    pub fn drop_last(mut self, drop: bool) -> Self {
        self.drop_last = drop;
        self
    }

    /// The items (dataset indices) of every batch of epoch `epoch`.
    pub fn plan(&self, len: usize, epoch: u64) -> Vec<Vec<usize>> {
        let size = self.batch_size.max(1);
        epoch_order(len, self.shuffle, self.seed, epoch)
            .chunks(size)
            .filter(|c| !self.drop_last || c.len() == size)
            .map(|c| c.to_vec())
            .collect()
    }

    /// Reads the bytes and labels of `items` through the dataset's source.
    pub fn assemble(&self, dataset: &Dataset, items: &[usize]) -> Result<HostBatch> {
        let shape = dataset.shape();
        let mut pixels = vec![0u8; items.len() * shape.len()];
        dataset.read_samples(items, &mut pixels)?;
        let labels = items.iter().map(|&i| dataset.label(i)).collect();
        Ok(HostBatch {
            items: items.to_vec(),
            dims: [items.len(), shape.channels, shape.height, shape.width],
            pixels,
            labels,
        })
    }

    /// The batch's pixels normalised into `f32`, `N x C x H x W`.
    pub fn normalize(&self, batch: &HostBatch) -> Result<Vec<f32>> {
        let [_, c, h, w] = batch.dims;
        let norm = &self.normalization;
        if norm.mean.len() != c || norm.std.len() != c {
            return Err(DataError::InvalidRequest {
                what: format!(
                    "normalisation has {} means and {} stds for {c}-channel images",
                    norm.mean.len(),
                    norm.std.len()
                ),
            });
        }
        let plane = h * w;
        // (x/255 - mean)/std = x * scale + shift
        let coeffs: Vec<(f32, f32)> = norm
            .mean
            .iter()
            .zip(&norm.std)
            .map(|(&m, &s)| (1.0 / (255.0 * s), -m / s))
            .collect();
        let mut out = vec![0f32; batch.pixels.len()];
        for (k, (src, dst)) in batch
            .pixels
            .chunks_exact(plane)
            .zip(out.chunks_exact_mut(plane))
            .enumerate()
        {
            let (scale, shift) = coeffs[k % c];
            for (d, &s) in dst.iter_mut().zip(src) {
                *d = s as f32 * scale + shift;
            }
        }
        Ok(out)
    }

    /// The batch as tensors on `device`.
    pub fn to_tensors(&self, batch: &HostBatch, device: &Device) -> Result<Batch> {
        let values = self.normalize(batch)?;
        let images = Tensor::<4>::from_data(TensorData::new(values, batch.dims), device);
        let labels: Vec<i64> = batch.labels.iter().map(|&l| l as i64).collect();
        let labels = Tensor::<1, Int>::from_data(TensorData::new(labels, [batch.dims[0]]), device);
        Ok(Batch { images, labels })
    }

    /// Every batch of epoch `epoch`, assembled on the host.
    pub fn host_batches<'a>(
        &'a self,
        dataset: &'a Dataset,
        epoch: u64,
    ) -> impl Iterator<Item = Result<HostBatch>> + 'a {
        self.plan(dataset.len(), epoch)
            .into_iter()
            .map(move |items| self.assemble(dataset, &items))
    }
}
