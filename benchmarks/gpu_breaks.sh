#!/usr/bin/env bash
# The GPU tests can fail: break the GPU path four ways, one at a time, and run the GPU tests on
# the CuPy stand-in against each break. Exit 0 only when every break fails at least one test.
#
#   bash benchmarks/gpu_breaks.sh [OUT_DIR]
#
# Each break is made in a temporary git worktree of HEAD (the checkout is never touched):
#   sync      drop the __syncthreads() of linear_relu.cu's bias-gradient partial sums
#   bound     an off-by-one bound: softmax_xent.cu's row kernel takes label == classes as valid
#   swap      two launcher arguments swapped: momentum and weight_decay of the SGD launch
#   hostsync  a capture rule: a float() (a device-to-host read) inside the static training step
# OUT_DIR (default: a temporary folder) gets each break's pytest log, NAME.log.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:-$(mktemp -d)}
mkdir -p "$OUT"
TREE=$(mktemp -d)/tree
git -C "$ROOT" worktree add -q --detach "$TREE" HEAD || exit 2
trap 'git -C "$ROOT" worktree remove --force "$TREE"' EXIT
TESTS=(tests/test_cupy_ops.py tests/test_gpu_path.py tests/test_gpu_fit.py tests/test_gpu_graph.py
       tests/test_gpu_training.py tests/test_static_step.py tests/test_weighted_losses.py
       tests/test_clip_grad.py)

replace() {  # replace FILE OLD NEW: the first OLD in FILE becomes NEW (OLD must be there)
    python3 - "$TREE/$1" "$2" "$3" <<'PY'
import pathlib, sys
path, old, new = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3]
text = path.read_text()
if old not in text:
    sys.exit(f"gpu_breaks.sh: {path.name} no longer holds the line to break: {old!r}")
path.write_text(text.replace(old, new, 1))
PY
}

uncaught=()
try() {  # try NAME FILE OLD NEW
    local name=$1 failed
    git -C "$TREE" checkout -q -- . && replace "$2" "$3" "$4" || exit 2
    (cd "$TREE" && GPUNET_TEST_CUDA=stand-in-subset python -m pytest -q -p no:cacheprovider \
        -m gpu --tb=line -rf "${TESTS[@]}") > "$OUT/$name.log" 2>&1
    failed=$(grep -c '^FAILED' "$OUT/$name.log")
    echo "== $name: $failed failing tests; first: $(grep -m1 '^FAILED' "$OUT/$name.log" \
        | cut -d' ' -f2)"
    [ "$failed" -gt 0 ] || uncaught+=("$name")
}

try sync kernels/linear_relu.cu $'    sums[threadIdx.y][threadIdx.x] = acc;\n    __syncthreads();\n' \
    $'    sums[threadIdx.y][threadIdx.x] = acc;\n'
try bound kernels/softmax_xent.cu $'if (label < 0 || label >= classes) {\n            if (lane == 0)' \
    $'if (label < 0 || label > classes) {\n            if (lane == 0)'
try swap gpunet/ops/launchers/optim.py 'np.float32(momentum), np.float32(weight_decay)' \
    'np.float32(weight_decay), np.float32(momentum)'
try hostsync gpunet/training/engine/step.py $'        self._forward_loss()\n        with inside():' \
    $'        self._forward_loss()\n        float(self.loss.ravel()[0])\n        with inside():'

echo "logs: $OUT"
if [ ${#uncaught[@]} -gt 0 ]; then
    echo "NOT CAUGHT: ${uncaught[*]}"
    exit 1
fi
echo "every break failed a test"
