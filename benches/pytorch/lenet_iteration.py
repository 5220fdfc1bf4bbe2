#!/usr/bin/env python3
"""PyTorch CPU baseline for one LeNet training iteration on MNIST.

Measures a plain training iteration (batch fetch, forward, loss, zero_grad,
backward, SGD step) and the extra cost of per-layer monitoring hooks that
read statistics back to the host, as a monitor would.

Modes:
  plain       no hooks
  hooks       forward + full backward hooks on every layer computing
              min, max, mean, mean|x|, NaN count, Inf count of each layer's
              output and of the gradient arriving at it (grad_output); after
              backward the same statistics of every parameter and its .grad;
              every statistic is read back with .item()
  hooks+hist  the same plus a 64-bin torch.histc of each of those tensors
              (over its finite values), read back with .tolist()

Run from the repository root:
  /usr/bin/python3 benches/pytorch/lenet_iteration.py [--iterations 200] [--threads 2] [--json out.json]
"""

import argparse
import gzip
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

MODES = ("plain", "hooks", "hooks+hist")
HIST_BINS = 64
IMAGE_MAGIC = 2051
LABEL_MAGIC = 2049


# --------------------------------------------------------------------------- data

def _read_gz(path):
    with gzip.open(path, "rb") as f:
        return f.read()


def load_idx_images(path):
    raw = _read_gz(path)
    magic, count, rows, cols = np.frombuffer(raw, dtype=">u4", count=4, offset=0)
    if magic != IMAGE_MAGIC:
        raise ValueError(f"{path}: bad magic {magic}, expected {IMAGE_MAGIC}")
    if (rows, cols) != (28, 28):
        raise ValueError(f"{path}: expected 28x28 images, got {rows}x{cols}")
    expected = 16 + int(count) * int(rows) * int(cols)
    if len(raw) != expected:
        raise ValueError(f"{path}: {len(raw)} bytes, header implies {expected}")
    pixels = np.frombuffer(raw, dtype=np.uint8, offset=16)
    return pixels.reshape(int(count), 1, int(rows), int(cols))


def load_idx_labels(path):
    raw = _read_gz(path)
    magic, count = np.frombuffer(raw, dtype=">u4", count=2, offset=0)
    if magic != LABEL_MAGIC:
        raise ValueError(f"{path}: bad magic {magic}, expected {LABEL_MAGIC}")
    if len(raw) != 8 + int(count):
        raise ValueError(f"{path}: {len(raw)} bytes, header implies {8 + int(count)}")
    labels = np.frombuffer(raw, dtype=np.uint8, offset=8)
    if labels.max() > 9:
        raise ValueError(f"{path}: label {labels.max()} out of range")
    return labels


def load_mnist_train(root):
    d = Path(root) / "datasets" / "mnist"
    images = load_idx_images(d / "train-images-idx3-ubyte.gz")
    labels = load_idx_labels(d / "train-labels-idx1-ubyte.gz")
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{images.shape[0]} images but {labels.shape[0]} labels")
    x = (images.astype(np.float32) / 255.0 - 0.1307) / 0.3081  # NCHW float32
    x = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    y = torch.from_numpy(labels.astype(np.int64))
    return x, y


class BatchCycler:
    """Seeded shuffled order, cycled; a batch is gathered on each call."""

    def __init__(self, x, y, batch_size, seed):
        self.x, self.y, self.batch_size = x, y, batch_size
        perm = np.random.default_rng(seed).permutation(x.shape[0])
        self.order = torch.from_numpy(perm.astype(np.int64))
        self.pos = 0

    def next(self):
        n = self.order.shape[0]
        if self.pos + self.batch_size <= n:
            idx = self.order[self.pos:self.pos + self.batch_size]
            self.pos += self.batch_size
        else:  # wrap around
            head = self.order[self.pos:]
            rest = self.batch_size - head.shape[0]
            idx = torch.cat([head, self.order[:rest]])
            self.pos = rest
        return self.x.index_select(0, idx), self.y.index_select(0, idx)


# -------------------------------------------------------------------------- model

def caffe_lenet():
    """Caffe's LeNet (examples/mnist/lenet_train_test.prototxt)."""
    return nn.Sequential(
        nn.Conv2d(1, 20, 5),        # conv1  -> 20x24x24
        nn.MaxPool2d(2, 2),         # pool1  -> 20x12x12
        nn.Conv2d(20, 50, 5),       # conv2  -> 50x8x8
        nn.MaxPool2d(2, 2),         # pool2  -> 50x4x4
        nn.Flatten(),               # 800 (Caffe's InnerProduct flattens implicitly)
        nn.Linear(800, 500),        # ip1
        nn.ReLU(),                  # relu1 (not in-place: full backward hooks forbid it)
        nn.Linear(500, 10),         # ip2
    )


LAYER_NAMES = {0: "conv1", 1: "pool1", 2: "conv2", 3: "pool2", 5: "ip1", 6: "relu1", 7: "ip2"}


# ------------------------------------------------------------------------ monitor

class Monitor:
    """Computes statistics of activations, incoming gradients and parameters and
    reads every value back to the host."""

    def __init__(self, with_hist):
        self.with_hist = with_hist
        self.reads = 0          # scalar/histogram read-backs in the current iteration
        self.sink = 0.0         # keeps results "used"

    def observe(self, t):
        t = t.detach()
        stats = (
            t.min(),
            t.max(),
            t.mean(),
            t.abs().mean(),
            torch.isnan(t).sum(),
            torch.isinf(t).sum(),
        )
        for s in stats:
            self.sink += float(s.item())
        self.reads += len(stats)
        if self.with_hist:
            finite = t[torch.isfinite(t)]
            if finite.numel() > 0:
                # min=max=0: histc uses the data's own min and max
                hist = torch.histc(finite.float(), bins=HIST_BINS).tolist()
                self.sink += hist[0]
            self.reads += 1

    def forward_hook(self, module, inputs, output):
        self.observe(output)

    def backward_hook(self, module, grad_input, grad_output):
        for g in grad_output:
            if g is not None:
                self.observe(g)

    def observe_parameters(self, model):
        for p in model.parameters():
            self.observe(p)
            if p.grad is not None:
                self.observe(p.grad)

    def attach(self, model):
        handles = []
        for i, m in enumerate(model):
            if i not in LAYER_NAMES:
                continue
            handles.append(m.register_forward_hook(self.forward_hook))
            handles.append(m.register_full_backward_hook(self.backward_hook))
        return handles


# ---------------------------------------------------------------------- benchmark

def run_mode(mode, x, y, args):
    torch.manual_seed(args.seed)  # identical initial weights in every mode
    model = caffe_lenet()
    model.train()
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    batches = BatchCycler(x, y, args.batch_size, args.seed)

    monitor = None
    if mode != "plain":
        monitor = Monitor(with_hist=(mode == "hooks+hist"))
        monitor.attach(model)

    def iteration():
        xb, yb = batches.next()
        out = model(xb)
        loss = criterion(out, yb)
        optimizer.zero_grad()
        loss.backward()
        if monitor is not None:
            monitor.observe_parameters(model)
        optimizer.step()
        return loss

    for _ in range(args.warmup):
        iteration()

    times_ms = []
    loss = None
    reads = 0
    for _ in range(args.iterations):
        if monitor is not None:
            monitor.reads = 0
        t0 = time.perf_counter()
        loss = iteration()
        t1 = time.perf_counter()
        times_ms.append((t1 - t0) * 1e3)
        if monitor is not None:
            reads = monitor.reads

    return {
        "mode": mode,
        "iterations": args.iterations,
        "mean_ms": statistics.fmean(times_ms),
        "median_ms": statistics.median(times_ms),
        "best_ms": min(times_ms),
        "stdev_ms": statistics.stdev(times_ms) if len(times_ms) > 1 else 0.0,
        "reads_per_iteration": reads,
        "final_loss": float(loss.item()),
    }


def default_root():
    # benches/pytorch/lenet_iteration.py -> repository root is two levels up
    here = Path(__file__).resolve().parent.parent.parent
    if (here / "datasets" / "mnist").is_dir():
        return here
    return Path.cwd()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=None,
                    help="repository root holding datasets/mnist (default: inferred)")
    ap.add_argument("--iterations", type=int, default=200, help="timed iterations per mode")
    ap.add_argument("--warmup", type=int, default=20, help="untimed warm-up iterations per mode")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--modes", default=",".join(MODES),
                    help=f"comma-separated subset of {','.join(MODES)}")
    ap.add_argument("--json", type=Path, default=None, help="write the figures as JSON here")
    args = ap.parse_args(argv)

    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    for m in modes:
        if m not in MODES:
            ap.error(f"unknown mode {m!r}")
    if args.iterations < 1:
        ap.error("--iterations must be >= 1")

    torch.set_num_threads(args.threads)
    root = args.root if args.root is not None else default_root()

    env = {k: os.environ.get(k) for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    print(f"torch {torch.__version__}  numpy {np.__version__}  python {platform.python_version()} ({sys.executable})")
    print(f"torch threads: {torch.get_num_threads()} (requested {args.threads}), "
          f"interop threads: {torch.get_num_interop_threads()}")
    print("env: " + "  ".join(f"{k}={v if v is not None else '(unset)'}" for k, v in env.items()))

    t0 = time.perf_counter()
    x, y = load_mnist_train(root)
    print(f"MNIST train: {tuple(x.shape)} {x.dtype}, {y.shape[0]} labels, "
          f"loaded from {root / 'datasets' / 'mnist'} in {time.perf_counter() - t0:.2f} s")
    print(f"batch {args.batch_size}, warm-up {args.warmup}, timed {args.iterations} iterations per mode; "
          f"hooked layers: {', '.join(LAYER_NAMES.values())}")
    print()

    results = []
    for mode in modes:
        r = run_mode(mode, x, y, args)
        results.append(r)

    base = next((r["median_ms"] for r in results if r["mode"] == "plain"), None)
    for r in results:
        r["ratio_to_plain_median"] = (r["median_ms"] / base) if base else None

    hdr = f"{'mode':<11} {'mean ms':>9} {'median ms':>10} {'best ms':>9} {'stdev':>8} {'x plain':>8} {'reads/it':>9} {'loss':>8}"
    print(hdr)
    print("-" * len(hdr))
    for r in results:
        ratio = f"{r['ratio_to_plain_median']:.2f}" if r["ratio_to_plain_median"] is not None else "-"
        print(f"{r['mode']:<11} {r['mean_ms']:>9.3f} {r['median_ms']:>10.3f} {r['best_ms']:>9.3f} "
              f"{r['stdev_ms']:>8.3f} {ratio:>8} {r['reads_per_iteration']:>9} {r['final_loss']:>8.4f}")

    if args.json is not None:
        payload = {
            "benchmark": "lenet_iteration",
            "framework": "pytorch",
            "torch_version": torch.__version__,
            "numpy_version": np.__version__,
            "python_version": platform.python_version(),
            "threads": torch.get_num_threads(),
            "interop_threads": torch.get_num_interop_threads(),
            "env": env,
            "batch_size": args.batch_size,
            "warmup": args.warmup,
            "iterations": args.iterations,
            "seed": args.seed,
            "hist_bins": HIST_BINS,
            "hooked_layers": list(LAYER_NAMES.values()),
            "results": results,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
