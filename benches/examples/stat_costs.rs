benches::use_mimalloc!();
use burn::prelude::*;
use std::time::Instant;

fn time<F: FnMut()>(name: &str, mut f: F) {
    for _ in 0..3 {
        f();
    }
    let mut v = Vec::new();
    for _ in 0..30 {
        let t = Instant::now();
        f();
        v.push(t.elapsed().as_secs_f64() * 1e6);
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!("{name:<40} median {:>8.1} us  best {:>8.1} us", v[15], v[0]);
}

fn main() {
    if std::env::args().any(|a| a == "lenet") {
        lenet_phases::run();
        return;
    }
    if std::env::args().any(|a| a == "tapstats") {
        tap_stats();
        return;
    }
    if std::env::args().any(|a| a == "reshape") {
        reshape_cost();
        return;
    }
    let d = Device::flex();
    let x = Tensor::<1>::random([737_280], burn::tensor::Distribution::Normal(0.0, 1.0), &d);
    let y = Tensor::<1>::random([737_280], burn::tensor::Distribution::Normal(0.0, 1.0), &d);
    time("min", || {
        let _ = x.clone().min().into_scalar::<f32>();
    });
    time("max", || {
        let _ = x.clone().max().into_scalar::<f32>();
    });
    time("sum", || {
        let _ = x.clone().sum().into_scalar::<f32>();
    });
    time("abs", || {
        let _ = x.clone().abs();
    });
    time("abs().sum()", || {
        let _ = x.clone().abs().sum().into_scalar::<f32>();
    });
    time("mul", || {
        let _ = x.clone() * y.clone();
    });
    time("cat4+read", || {
        let _ = Tensor::cat(
            vec![
                x.clone().min(),
                x.clone().max(),
                x.clone().sum(),
                x.clone().abs().sum(),
            ],
            0,
        )
        .try_into_vec_as::<f32>();
    });
    time("to_vec copy", || {
        let _ = x.clone().try_into_vec_as::<f32>();
    });
    time("to_vec + host fused", || {
        let v = x.clone().try_into_vec_as::<f32>().unwrap();
        let (mut mn, mut mx, mut s, mut a) = (f32::INFINITY, f32::NEG_INFINITY, 0f64, 0f64);
        for c in v.chunks(1024) {
            let (mut cs, mut ca) = (0f32, 0f32);
            for &e in c {
                mn = mn.min(e);
                mx = mx.max(e);
                cs += e;
                ca += e.abs();
            }
            s += cs as f64;
            a += ca as f64;
        }
        std::hint::black_box((mn, mx, s, a));
    });
    let xa = Tensor::<1>::random(
        [737_280],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        &d.clone().autodiff(),
    )
    .require_grad();
    let ya = Tensor::<1>::random(
        [737_280],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        &d.clone(),
    );
    let ya = Tensor::<1>::from_inner(ya);
    time("cut (x*d).sum().backward()", || {
        let _ = (xa.clone() * ya.clone()).sum().backward();
    });
    time("cut matmul dot backward()", || {
        let _ = xa
            .clone()
            .reshape([1, 737_280])
            .matmul(ya.clone().reshape([737_280, 1]))
            .sum()
            .backward();
    });
    time("backward of sum only", || {
        let _ = xa.clone().sum().backward();
    });
    let small = Tensor::<1>::random([10], burn::tensor::Distribution::Normal(0.0, 1.0), &d);
    time("sum of 10 values", || {
        let _ = small.clone().sum();
    });
    time("sum of 10 values + read", || {
        let _ = small.clone().sum().into_scalar::<f32>();
    });
    time("cat 30 x [4]", || {
        let _ = Tensor::cat(vec![small.clone().slice(0..4); 30], 0);
    });
    let sa = Tensor::<1>::random(
        [10],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        &d.clone().autodiff(),
    )
    .require_grad();
    time("tiny cut: detach+require_grad", || {
        let _ = sa.clone().detach().require_grad();
    });
    time("tiny backward (x*x).sum()", || {
        let _ = (sa.clone() * sa.clone()).sum().backward();
    });
}

mod lenet_phases {
    use burn::nn::loss::CrossEntropyLossConfig;
    use burn::prelude::*;
    use model_core::models::{Classifier, LeNet};
    use model_core::tap::{Tap, TapDetail};

    pub fn run() {
        let d = Device::flex().autodiff();
        d.seed(1);
        let model = LeNet::mnist(&d);
        let x = Tensor::<4>::random(
            [64, 1, 28, 28],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &d,
        );
        let y = Tensor::<1, Int>::from_data(
            TensorData::new((0..64).map(|i| (i % 10) as i64).collect::<Vec<_>>(), [64]),
            &d,
        );
        let ce = CrossEntropyLossConfig::new().init(&d);
        for detail in [
            TapDetail::Off,
            TapDetail::Timing,
            TapDetail::Full,
            TapDetail::Off,
            TapDetail::Timing,
            TapDetail::Full,
        ] {
            super::time(&format!("lenet fwd+bwd {detail:?}"), || {
                let mut tap = Tap::new(detail);
                let logits = model.forward_tapped(x.clone(), &mut tap);
                let loss = tap.layer("loss", "SoftmaxWithLoss", logits, |l| {
                    ce.forward(l, y.clone())
                });
                let _ = std::hint::black_box(tap.backward(loss, &model));
            });
        }
        super::time("lenet forward only, plain", || {
            let _ = std::hint::black_box(model.forward(x.clone()));
        });
        super::time("lenet forward only, timing (cuts)", || {
            let mut tap = Tap::new(TapDetail::Timing);
            let _ = std::hint::black_box(model.forward_tapped(x.clone(), &mut tap));
        });
    }
}

pub fn reshape_cost() {
    use burn::nn::conv::Conv2dConfig;
    let d = Device::flex();
    let conv = Conv2dConfig::new([1, 20], [5, 5]).init(&d);
    let x = Tensor::<4>::random(
        [64, 1, 28, 28],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        &d,
    );
    let y = conv.forward(x.clone());
    time("conv1 forward", || {
        let _ = conv.forward(x.clone());
    });
    time("reshape conv1 output to 1-D", || {
        let _ = std::hint::black_box(y.clone().reshape([737_280]));
    });
    time("stats on 4-D conv1 output", || {
        let _ = Tensor::cat(
            vec![
                y.clone().min(),
                y.clone().max(),
                y.clone().sum(),
                y.clone().abs().sum(),
            ],
            0,
        )
        .into_data();
    });
    time("stats on 1-D reshaped output", || {
        let f = y.clone().reshape([737_280]);
        let _ = Tensor::cat(
            vec![
                f.clone().min(),
                f.clone().max(),
                f.clone().sum(),
                f.abs().sum(),
            ],
            0,
        )
        .into_data();
    });
}

/// The Tap's statistics of one LeNet iteration's blobs (batch 64: every layer's data and diff,
/// every parameter's value and gradient), in place (the CPU path) and by device reductions.
pub fn tap_stats() {
    let d = Device::flex();
    let sizes: &[usize] = &[
        50_176, 737_280, 737_280, 184_320, 184_320, 204_800, 204_800, 51_200, 51_200, 32_000,
        32_000, 640, 640, 1, 500, 500, 20, 20, 25_000, 25_000, 50, 50, 400_000, 400_000, 500, 500,
        5_000, 5_000, 10, 10,
    ];
    let blobs: Vec<Tensor<1>> = sizes
        .iter()
        .map(|&n| Tensor::<1>::random([n], burn::tensor::Distribution::Normal(0.0, 1.0), &d))
        .collect();
    for _ in 0..2 {
        time("lenet blobs: in place (fused)", || {
            std::hint::black_box(model_core::tap::blob_stats(&blobs));
        });
        time("lenet blobs: device reductions", || {
            std::hint::black_box(model_core::tap::blob_stats_by_device_reductions(&blobs));
        });
    }
}
