//! `Dataset`: labelled images stored as `u8`, read through a [`SampleSource`].
//!
//! A dataset is a list of sample indices into a source, the labels of those samples and the class
//! names. Subsets share the source; they only hold other indices. Pixels are `u8` in
//! channel-major order (`C x H x W`), the layout Burn's convolutions take.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};

/// The shape of one sample: channels, height, width.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SampleShape {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
}

impl SampleShape {
    pub fn new(channels: usize, height: usize, width: usize) -> Self {
        SampleShape {
            channels,
            height,
            width,
        }
    }

    /// Bytes of one sample (`u8` per value).
    pub fn len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// Whether a sample holds no values at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Values per channel plane.
    pub fn plane(&self) -> usize {
        self.height * self.width
    }
}

impl fmt::Display for SampleShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}x{}x{} (CxHxW)",
            self.channels, self.height, self.width
        )
    }
}

/// Where a dataset's pixels come from: memory, or a file or folder read on each request.
///
/// Implementations read one sample's `C x H x W` bytes into `out`, whose length is
/// `shape().len()`. Indices are the source's own (0..`len()`).
pub trait SampleSource: Send + Sync + fmt::Debug {
    /// Number of samples.
    fn len(&self) -> usize;
    /// Whether the source holds no samples.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Shape of every sample.
    fn shape(&self) -> SampleShape;
    /// Reads sample `index` into `out`.
    fn read_into(&self, index: usize, out: &mut [u8]) -> Result<()>;
    /// Reads several samples into consecutive slices of `out`. Sources that open a file can
    /// override this to open it once per batch.
    fn read_many(&self, indices: &[usize], out: &mut [u8]) -> Result<()> {
        let n = self.shape().len();
        for (&index, chunk) in indices.iter().zip(out.chunks_exact_mut(n)) {
            self.read_into(index, chunk)?;
        }
        Ok(())
    }
    /// Bytes this source keeps in memory.
    fn resident_bytes(&self) -> usize {
        0
    }
    /// One line saying what the source reads (`"IDX file ..."`, `"in memory"` ...).
    fn describe(&self) -> String;
}

/// All pixels decoded into one buffer: the `LoadAll` strategy's source.
pub struct InMemory {
    shape: SampleShape,
    pixels: Vec<u8>,
    origin: String,
}

impl fmt::Debug for InMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InMemory")
            .field("shape", &self.shape)
            .field("samples", &self.len())
            .field("origin", &self.origin)
            .finish()
    }
}

impl InMemory {
    /// Wraps `pixels`, which holds whole samples of `shape` back to back.
    pub fn new(shape: SampleShape, pixels: Vec<u8>, origin: impl Into<String>) -> Result<Self> {
        if shape.is_empty() || !pixels.len().is_multiple_of(shape.len()) {
            return Err(DataError::InvalidRequest {
                what: format!(
                    "{} bytes of pixels are not a whole number of {shape} samples",
                    pixels.len()
                ),
            });
        }
        Ok(InMemory {
            shape,
            pixels,
            origin: origin.into(),
        })
    }

    /// The pixels of every sample, back to back.
    pub fn pixels(&self) -> &[u8] {
        &self.pixels
    }

    /// One sample's pixels, without copying.
    pub fn sample(&self, index: usize) -> &[u8] {
        let n = self.shape.len();
        &self.pixels[index * n..(index + 1) * n]
    }
}

impl SampleSource for InMemory {
    fn len(&self) -> usize {
        self.pixels.len() / self.shape.len()
    }
    fn shape(&self) -> SampleShape {
        self.shape
    }
    fn read_into(&self, index: usize, out: &mut [u8]) -> Result<()> {
        let len = self.len();
        if index >= len {
            return Err(DataError::IndexOutOfRange { index, len });
        }
        out.copy_from_slice(self.sample(index));
        Ok(())
    }
    fn resident_bytes(&self) -> usize {
        self.pixels.len()
    }
    fn describe(&self) -> String {
        format!(
            "in memory ({} MiB, from {})",
            self.pixels.len() >> 20,
            self.origin
        )
    }
}

/// Labelled samples: a source, the indices into it that this dataset holds, and their labels.
#[derive(Debug, Clone)]
pub struct Dataset {
    name: String,
    class_names: Arc<[String]>,
    source: Arc<dyn SampleSource>,
    /// Source index of each sample of this dataset.
    indices: Arc<[u32]>,
    /// Label of each sample of this dataset (same order as `indices`).
    labels: Arc<[u8]>,
}

impl Dataset {
    /// A dataset of every sample of `source`, with one label per sample.
    pub fn new(
        name: impl Into<String>,
        class_names: Vec<String>,
        source: Arc<dyn SampleSource>,
        labels: Vec<u8>,
    ) -> Result<Self> {
        if labels.len() != source.len() {
            return Err(DataError::InvalidRequest {
                what: format!(
                    "{} labels for {} samples in {}",
                    labels.len(),
                    source.len(),
                    source.describe()
                ),
            });
        }
        if let Some(&bad) = labels.iter().find(|&&l| l as usize >= class_names.len()) {
            return Err(DataError::InvalidRequest {
                what: format!("label {bad} but only {} class names", class_names.len()),
            });
        }
        let indices: Arc<[u32]> = (0..labels.len() as u32).collect();
        Ok(Dataset {
            name: name.into(),
            class_names: class_names.into(),
            source,
            indices,
            labels: labels.into(),
        })
    }

    /// The dataset's name (`"mnist-train"`, a folder name ...).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.indices.len()
    }

    /// Whether the dataset holds no samples.
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }

    /// Shape of every sample.
    pub fn shape(&self) -> SampleShape {
        self.source.shape()
    }

    /// Class names, indexed by label.
    pub fn class_names(&self) -> &[String] {
        &self.class_names
    }

    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.class_names.len()
    }

    /// Labels of every sample, in dataset order.
    pub fn labels(&self) -> &[u8] {
        &self.labels
    }

    /// Label of sample `i`.
    pub fn label(&self, i: usize) -> u8 {
        self.labels[i]
    }

    /// The source the pixels are read from.
    pub fn source(&self) -> &Arc<dyn SampleSource> {
        &self.source
    }

    /// The same samples read through `source` instead (a wrapper that caches, counts or, in a
    /// test, slows reads down). `source` must hold as many samples of the same shape.
    pub fn read_through(&self, source: Arc<dyn SampleSource>) -> Result<Dataset> {
        if source.len() != self.source.len() || source.shape() != self.source.shape() {
            return Err(DataError::InvalidRequest {
                what: format!(
                    "{}: the new source holds {} samples of {}; the dataset's holds {} of {}",
                    self.name,
                    source.len(),
                    source.shape(),
                    self.source.len(),
                    self.source.shape()
                ),
            });
        }
        Ok(self.with_source(source))
    }

    /// The same samples read through another source (same indices into it, same labels).
    pub(crate) fn with_source(&self, source: Arc<dyn SampleSource>) -> Dataset {
        Dataset {
            source,
            ..self.clone()
        }
    }

    /// Samples per label.
    pub fn label_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.num_classes()];
        for &l in self.labels.iter() {
            counts[l as usize] += 1;
        }
        counts
    }

    /// Reads sample `i`'s pixels into `out` (`shape().len()` bytes).
    pub fn read_sample(&self, i: usize, out: &mut [u8]) -> Result<()> {
        let len = self.len();
        let &index = self
            .indices
            .get(i)
            .ok_or(DataError::IndexOutOfRange { index: i, len })?;
        self.source.read_into(index as usize, out)
    }

    /// Reads samples `items` (dataset indices) into consecutive slices of `out`.
    pub fn read_samples(&self, items: &[usize], out: &mut [u8]) -> Result<()> {
        let len = self.len();
        let mut source_indices = Vec::with_capacity(items.len());
        for &i in items {
            let &index = self
                .indices
                .get(i)
                .ok_or(DataError::IndexOutOfRange { index: i, len })?;
            source_indices.push(index as usize);
        }
        self.source.read_many(&source_indices, out)
    }

    /// The samples `items` (dataset indices, in the order given) as a new dataset sharing this
    /// one's source.
    pub fn subset(&self, items: &[usize]) -> Result<Dataset> {
        let len = self.len();
        let mut indices = Vec::with_capacity(items.len());
        let mut labels = Vec::with_capacity(items.len());
        for &i in items {
            if i >= len {
                return Err(DataError::IndexOutOfRange { index: i, len });
            }
            indices.push(self.indices[i]);
            labels.push(self.labels[i]);
        }
        Ok(Dataset {
            name: self.name.clone(),
            class_names: self.class_names.clone(),
            source: self.source.clone(),
            indices: indices.into(),
            labels: labels.into(),
        })
    }

    /// Indices of a seeded stratified sample of `n` samples: each label keeps its share of the
    /// dataset (largest remainders round the shares to whole samples), and the samples within a
    /// label are a seeded random choice. The indices come back sorted.
    pub fn stratified_indices(&self, n: usize, seed: u64) -> Result<Vec<usize>> {
        if n > self.len() {
            return Err(DataError::InvalidRequest {
                what: format!(
                    "a stratified subset of {n} samples from a dataset of {}",
                    self.len()
                ),
            });
        }
        let mut by_label: BTreeMap<u8, Vec<usize>> = BTreeMap::new();
        for (i, &l) in self.labels.iter().enumerate() {
            by_label.entry(l).or_default().push(i);
        }
        let total = self.len().max(1) as u128;
        // Largest-remainder apportionment of n over the labels.
        let mut quotas: Vec<(u8, usize, u128)> = by_label
            .iter()
            .map(|(&l, v)| {
                let exact = v.len() as u128 * n as u128;
                (l, (exact / total) as usize, exact % total)
            })
            .collect();
        let assigned: usize = quotas.iter().map(|q| q.1).sum();
        let mut order: Vec<usize> = (0..quotas.len()).collect();
        order.sort_by(|&a, &b| quotas[b].2.cmp(&quotas[a].2).then(a.cmp(&b)));
        for &k in order.iter().take(n - assigned) {
            quotas[k].1 += 1;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut chosen = Vec::with_capacity(n);
        for (l, quota, _) in quotas {
            let mut members = by_label.remove(&l).unwrap_or_default();
            members.shuffle(&mut rng);
            chosen.extend_from_slice(&members[..quota]);
        }
        chosen.sort_unstable();
        Ok(chosen)
    }

    /// A seeded stratified subset of `n` samples (see [`Dataset::stratified_indices`]).
    pub fn stratified_subset(&self, n: usize, seed: u64) -> Result<Dataset> {
        let indices = self.stratified_indices(n, seed)?;
        self.subset(&indices)
    }

    /// The mean image of each label and of the whole dataset, in pixel units (0..=255).
    pub fn mean_images(&self) -> Result<MeanImages> {
        let shape = self.shape();
        let n = shape.len();
        let mut sums = vec![vec![0u64; n]; self.num_classes()];
        let mut counts = vec![0usize; self.num_classes()];
        const CHUNK: usize = 256;
        let mut buf = vec![0u8; n * CHUNK];
        let items: Vec<usize> = (0..self.len()).collect();
        for chunk in items.chunks(CHUNK) {
            let out = &mut buf[..chunk.len() * n];
            self.read_samples(chunk, out)?;
            for (&i, sample) in chunk.iter().zip(out.chunks_exact(n)) {
                let l = self.labels[i] as usize;
                counts[l] += 1;
                for (s, &p) in sums[l].iter_mut().zip(sample) {
                    *s += p as u64;
                }
            }
        }
        let mut overall = vec![0u64; n];
        for s in &sums {
            for (o, &v) in overall.iter_mut().zip(s) {
                *o += v;
            }
        }
        let mean = |sum: &[u64], count: usize| -> Vec<f32> {
            sum.iter()
                .map(|&s| {
                    if count == 0 {
                        0.0
                    } else {
                        (s as f64 / count as f64) as f32
                    }
                })
                .collect()
        };
        let per_label = sums
            .iter()
            .zip(&counts)
            .enumerate()
            .map(|(l, (s, &c))| MeanImage {
                label: Some(l as u8),
                count: c,
                shape,
                pixels: mean(s, c),
            })
            .collect();
        let overall = MeanImage {
            label: None,
            count: self.len(),
            shape,
            pixels: mean(&overall, self.len()),
        };
        Ok(MeanImages { per_label, overall })
    }
}

/// What a dataset holds, for reports and the terminal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetSummary {
    pub name: String,
    pub samples: usize,
    pub shape: SampleShape,
    pub class_names: Vec<String>,
    /// Samples per label, indexed by label.
    pub label_counts: Vec<usize>,
    /// Where the pixels are read from.
    pub source: String,
    /// Bytes of pixels held in memory.
    pub resident_bytes: usize,
}

impl Dataset {
    /// A summary of this dataset.
    pub fn summary(&self) -> DatasetSummary {
        DatasetSummary {
            name: self.name.clone(),
            samples: self.len(),
            shape: self.shape(),
            class_names: self.class_names.to_vec(),
            label_counts: self.label_counts(),
            source: self.source.describe(),
            resident_bytes: self.source.resident_bytes(),
        }
    }
}

/// The mean of a set of images, in pixel units (0..=255), `C x H x W`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeanImage {
    /// The label whose samples were averaged; `None` for the whole dataset.
    pub label: Option<u8>,
    /// Number of samples averaged.
    pub count: usize,
    pub shape: SampleShape,
    pub pixels: Vec<f32>,
}

impl MeanImage {
    /// Mean of each channel.
    pub fn channel_means(&self) -> Vec<f32> {
        self.pixels
            .chunks_exact(self.shape.plane().max(1))
            .map(|p| (p.iter().map(|&v| v as f64).sum::<f64>() / p.len() as f64) as f32)
            .collect()
    }
}

/// Mean images per label and overall.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeanImages {
    /// One per label, indexed by label.
    pub per_label: Vec<MeanImage>,
    pub overall: MeanImage,
}
