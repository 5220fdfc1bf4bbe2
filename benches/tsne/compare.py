"""openTSNE 1.0.4 (bh and fft) on the PCA-50 input `tsne_bench` wrote, against our map.

Reads DIR/pca50.npy, DIR/labels.npy, DIR/ours.npy and DIR/ours.json; prints one table and a JSON
line with seconds, 10-NN accuracies in 2-D and the ratio ours / fastest openTSNE.
"""
import argparse
import json
import time

import numpy as np
import openTSNE


def knn_accuracy(y, labels, k=10):
    """Majority label of the k nearest neighbours (self excluded; a tie goes to the label of the
    nearest among the tied), the same rule as data-check's."""
    y = np.asarray(y, dtype=np.float64)
    n = len(y)
    sq = (y * y).sum(1)
    correct = 0
    for start in range(0, n, 1000):
        block = y[start:start + 1000]
        d = sq[start:start + 1000, None] + sq[None, :] - 2.0 * block @ y.T
        d[np.arange(len(block)), np.arange(start, start + len(block))] = np.inf
        idx = np.argpartition(d, k, axis=1)[:, :k]
        order = np.take_along_axis(d, idx, 1).argsort(1, kind="stable")
        idx = np.take_along_axis(idx, order, 1)
        for r, neigh in enumerate(idx):
            votes = labels[neigh]
            counts = np.bincount(votes, minlength=labels.max() + 1)
            best = counts.max()
            vote = next(l for l in votes if counts[l] == best)
            correct += vote == labels[start + r]
    return correct / n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--methods", default="bh,fft")
    args = ap.parse_args()
    x = np.load(f"{args.dir}/pca50.npy").astype(np.float64)
    labels = np.load(f"{args.dir}/labels.npy").astype(np.int64)
    ours = json.load(open(f"{args.dir}/ours.json"))
    ours_acc = knn_accuracy(np.load(f"{args.dir}/ours.npy"), labels)
    rows = {"ours": {"seconds": ours["tsne_seconds"], "knn_accuracy_2d": ours_acc}}
    for method in args.methods.split(","):
        tsne = openTSNE.TSNE(
            perplexity=30,
            early_exaggeration_iter=250,
            n_iter=750,
            negative_gradient_method=method,
            n_jobs=args.threads,
            random_state=0,
            verbose=False,
        )
        start = time.perf_counter()
        emb = tsne.fit(x)
        seconds = time.perf_counter() - start
        rows[f"openTSNE {method}"] = {
            "seconds": seconds,
            "knn_accuracy_2d": knn_accuracy(np.asarray(emb), labels),
            "kl_divergence": float(emb.kl_divergence),
        }
    best_name, best = min(
        ((k, v) for k, v in rows.items() if k != "ours"), key=lambda kv: kv[1]["seconds"]
    )
    print(f"{len(x)} points x {x.shape[1]} (PCA), {args.threads} threads, openTSNE {openTSNE.__version__}")
    print(f"{'':>16} {'seconds':>9} {'10-NN acc 2-D':>14}")
    for name, r in rows.items():
        print(f"{name:>16} {r['seconds']:9.2f} {r['knn_accuracy_2d']:14.4f}")
    ratio = rows["ours"]["seconds"] / best["seconds"]
    print(f"ratio ours / {best_name}: {ratio:.3f} (below 1: ours is faster)")
    print(f"accuracy ours - {best_name}: {ours_acc - best['knn_accuracy_2d']:+.4f}")
    print(f"ours: peak RSS {ours['peak_rss_bytes'] / 2**20:.0f} MiB, estimate {ours['estimated_bytes'] / 2**20:.0f} MiB")
    print(json.dumps({"rows": rows, "anchor": best_name, "ratio": ratio,
                      "ours_peak_rss_bytes": ours["peak_rss_bytes"],
                      "ours_estimated_bytes": ours["estimated_bytes"]}))


if __name__ == "__main__":
    main()
