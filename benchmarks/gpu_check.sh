#!/usr/bin/env bash
# The device check: the GPU tests, then benchmarks/gpu_check.py (fused vs unfused kernels,
# copy bandwidth, cuBLAS vs tiled GEMM, training step). Writes gpu_check.log, pytest.xml and
# gpu_check.json under $OUT (default: benchmarks/results/<device>-<date>). Needs CuPy for
# CUDA 13, pytest and a GPU; no network. Runs from the source tree in under 5 minutes.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
unset CUPY_TF32 NVIDIA_TF32_OVERRIDE  # full float32: the GPU must match the CPU

if [ -z "${OUT:-}" ]; then
    device=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n1 | tr -c 'A-Za-z0-9\n' '-')
    OUT="benchmarks/results/${device:-gpu}-$(date -u +%Y%m%d)"
fi
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu_check.log") 2>&1

echo "== gpu_check $(date -u +%FT%TZ) at $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
nvidia-smi || echo "nvidia-smi unavailable"
python -c "import gpunet as gn; ok, why = gn.gpu_status(); print('gpu_status:', ok, why); raise SystemExit(0 if ok else 1)" || {
    echo "FAIL: no usable GPU through CuPy"; exit 1; }

echo "== GPU path tests (kernels vs NumPy, NVRTC compile, CPU/GPU training agreement)"
timeout 150 python -m pytest -q -p no:cacheprovider -rs --junitxml="$OUT/pytest.xml" \
    tests/test_cupy_ops.py tests/test_kernels_compile.py tests/test_gpu_training.py
tests_rc=$?

echo "== the rest of the suite's GPU cases (backend fixture)"
timeout 50 python -m pytest -q -p no:cacheprovider -m gpu -rs --junitxml="$OUT/pytest-suite.xml" \
    --ignore=tests/test_cupy_ops.py --ignore=tests/test_kernels_compile.py \
    --ignore=tests/test_gpu_training.py tests
suite_rc=$?
[ "$suite_rc" -eq 5 ] && suite_rc=0  # no GPU-marked tests elsewhere

echo "== benchmark"
timeout 90 python benchmarks/gpu_check.py --out "$OUT/gpu_check.json"
bench_rc=$?

echo "== exit codes: gpu tests $tests_rc, suite gpu cases $suite_rc, benchmark $bench_rc"
[ "$tests_rc" -eq 0 ] && [ "$suite_rc" -eq 0 ] && [ "$bench_rc" -eq 0 ]
