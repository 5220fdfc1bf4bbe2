//! What the weights step costs on the real pre-trained ResNet-20 (97 tensors, PyTorch pickle):
//! reading the file, importing it into the model by name, and the tensor-by-tensor proof (the
//! model read back, compared with the file and with a fresh model, statistics and histograms
//! included).
//!
//! Run: `cargo bench -p benches --bench weights`.

benches::use_mimalloc!();

use std::hint::black_box;
use std::time::Duration;

use burn::prelude::*;
use criterion::{Criterion, criterion_group, criterion_main};
use model_core::bundled;
use model_core::models::{PytorchImport, ResNet20, build_seeded, import_pytorch};
use weight_check::{WeightFormat, prove, read_file, read_model};

fn weights(c: &mut Criterion) {
    let path = bundled::resnet20_weights();
    let import = PytorchImport::data_parallel_checkpoint();
    let format = WeightFormat::Pytorch(import.clone());
    let fresh = build_seeded(&Device::flex(), 3, ResNet20::cifar10);
    let mut g = c.benchmark_group("weights_resnet20");
    g.bench_function("read_file", |b| {
        b.iter(|| {
            black_box(
                read_file(&path, &format)
                    .expect("the bundled file reads")
                    .len(),
            )
        })
    });
    g.bench_function("import", |b| {
        b.iter(|| {
            let mut model = fresh.clone();
            black_box(
                import_pytorch(&mut model, &path, &import)
                    .expect("imports")
                    .applied
                    .len(),
            )
        })
    });
    let mut loaded = fresh.clone();
    import_pytorch(&mut loaded, &path, &import).expect("imports");
    let file = read_file(&path, &format).expect("reads");
    let fresh_view = read_model(&fresh, &format);
    g.bench_function("read_model_and_prove", |b| {
        b.iter(|| {
            let proof = prove(&read_model(&loaded, &format), &fresh_view, &file, &[]);
            black_box(proof.applied)
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().without_plots().sample_size(10).measurement_time(Duration::from_secs(5));
    targets = weights
}
criterion_main!(benches);
