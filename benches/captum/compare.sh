#!/usr/bin/env bash
# Captum's Occlusion (PyTorch 1.13 on the CPU, Debian's python3-torch) against ours, on the same
# machine in the same run: LeNet 28x28 (window 6, stride 2: 144 windows) and ResNet-20 32x32
# (window 8, stride 2: 169 windows), batched and one window at a time. See README.md.
#
# Usage: benches/captum/compare.sh [REPEATS]   (default 5)
set -euo pipefail
cd "$(dirname "$0")/../.."
repeats="${1:-5}"
venv=target/captum-venv
out=target/captum-compare.txt

# Debian's PyTorch and matplotlib (captum imports it); captum from PyPI without dependencies, so
# pip does not replace Debian's numpy with one torch 1.13 was not built against.
if ! /usr/bin/python3 -c 'import torch, matplotlib' 2>/dev/null; then
    if [ "$(id -u)" = 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y python3-torch python3-matplotlib
    else
        echo "need Debian's python3-torch and python3-matplotlib: sudo apt-get install python3-torch python3-matplotlib" >&2
        exit 2
    fi
fi
if [ ! -x "$venv/bin/python" ]; then
    /usr/bin/python3 -m venv --system-site-packages "$venv"
fi
if ! "$venv/bin/python" -c 'import captum' 2>/dev/null; then
    "$venv/bin/pip" install --no-deps captum==0.7.0 tqdm
fi

# Give PyTorch its best: 2 threads (set in compare.py), one OpenBLAS thread, no forced core type.
export OPENBLAS_NUM_THREADS=1
unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE

cargo build -q --release -p benches --examples
{
    echo "# $(date -u +%FT%TZ) on $(nproc) cores; load: $(cut -d' ' -f1-3 /proc/loadavg)"
    "$venv/bin/python" benches/captum/compare.py --repeats "$repeats"
    target/release/examples/occlusion_speed --repeats "$repeats"
} | tee "$out"

# Ratios: ours / Captum, batched against perturbations_per_eval=64, unbatched against 1.
awk '
    /windows_per_second=/ {
        match($0, /windows_per_second=[0-9.]+/); rate = substr($0, RSTART + 19, RLENGTH - 19)
        key = $1 " " $2 " " $3; sub(/:$/, "", key); r[key] = rate
    }
    END {
        print ""
        split("lenet resnet20", names, " ")
        for (i = 1; i <= 2; i++) {
            n = names[i]
            printf "%-9s ours batched %6.0f/s vs Captum ppe64 %6.0f/s: %.2fx | ours unbatched %6.0f/s vs Captum ppe1 %6.0f/s: %.2fx | ours batched/unbatched %.1fx\n",
                n, r["ours " n " batched"], r["captum " n " ppe64"], r["ours " n " batched"] / r["captum " n " ppe64"],
                r["ours " n " unbatched"], r["captum " n " ppe1"], r["ours " n " unbatched"] / r["captum " n " ppe1"],
                r["ours " n " batched"] / r["ours " n " unbatched"]
        }
    }' "$out" | tee -a "$out"
