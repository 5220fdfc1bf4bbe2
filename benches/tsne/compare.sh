#!/usr/bin/env bash
# Our Barnes-Hut t-SNE against openTSNE 1.0.4 (its `bh` and `fft` gradient methods) on the same
# input: the PCA-50 projection of the 10,000 MNIST t10k images, perplexity 30, 250 iterations of
# early exaggeration + 750, 2 threads. Prints seconds, 10-NN accuracies in 2-D and the ratio
# ours / best openTSNE. See README.md.
#
#   benches/tsne/compare.sh            # POINTS=10000 THREADS=2 by default
#   POINTS=2000 benches/tsne/compare.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
VENV=$TARGET/tsne-venv
OUT=$TARGET/tsne-compare
POINTS=${POINTS:-10000}
THREADS=${THREADS:-2}
mkdir -p "$OUT"

if ! "$VENV/bin/python" -c "import openTSNE, numpy, sys; sys.exit(openTSNE.__version__ != '1.0.4')" 2>/dev/null; then
    echo "creating $VENV with openTSNE 1.0.4 and numpy" >&2
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --upgrade pip
    "$VENV/bin/pip" install --quiet openTSNE==1.0.4 numpy
fi

# The workspace's dev profile is fully optimised (opt-level 3), like the checklist's runs.
cargo build --quiet -p data-check --example tsne_bench
echo "ours: $POINTS points, $THREADS threads" >&2
RAYON_NUM_THREADS=$THREADS "$TARGET/debug/examples/tsne_bench" --points "$POINTS" --out "$OUT" > "$OUT/ours.json"

# OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are set on these machines for old OpenBLAS builds and
# slow a current numpy down: unset for openTSNE's run.
env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \
    OMP_NUM_THREADS="$THREADS" OPENBLAS_NUM_THREADS="$THREADS" NUMBA_NUM_THREADS="$THREADS" \
    "$VENV/bin/python" "$ROOT/benches/tsne/compare.py" --dir "$OUT" --threads "$THREADS"
