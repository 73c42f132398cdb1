#!/usr/bin/env bash
# The device run of the throughput study, one command (estimated 5 minutes on an H100, at most
# 9.7 by its timeouts: it fits one 10-minute device call):
#   bash benchmarks/run_device_sweep.sh          # OUT=DIR to choose where results go
# 1. the GPU tests: no benchmark of wrong kernels counts, so a failure stops here;
# 2. gpunet bench --device gpu: batch 32..65536, cupy-unfused, cupy-fused, torch, gemm-floor,
#    exact float32 (TF32 off), into $OUT (bench.json, bench.csv, bench.md, the two plots);
# 3. the pytest-benchmark suite's GPU cases: fused kernels vs plain CuPy, one step per variant.
# Needs CuPy, PyTorch with CUDA, pytest-benchmark and matplotlib (the device image has them);
# runs from the source tree, no network. Default OUT: benchmarks/results/<gpu>-<date>.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
unset CUPY_TF32 NVIDIA_TF32_OVERRIDE  # exact float32 unless --tf32 is asked for
PY=${PYTHON:-python3}

gpu_name=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n1)
OUT=${OUT:-benchmarks/results/$(echo "${gpu_name:-gpu}" | tr -c 'A-Za-z0-9\n' '-')-$(date -u +%F)}
mkdir -p "$OUT"
exec > >(tee "$OUT/device_sweep.log") 2>&1

echo "== run_device_sweep $(date -u +%FT%TZ) at $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv || true
$PY -c "import gpunet as gn; ok, why = gn.gpu_status(); print('gpu_status:', ok, why); raise SystemExit(0 if ok else 1)" || {
    echo "FAIL: no usable GPU through CuPy"; exit 1; }

echo "== 1/3 GPU tests"
timeout 220 $PY -m pytest -q -p no:cacheprovider -m gpu -rs tests || {
    echo "FAIL: the GPU tests fail: fix the kernels before benchmarking them"; exit 1; }

echo "== 2/3 gpunet bench --device gpu"
timeout 270 $PY -m gpunet bench --device gpu --out "$OUT"
sweep_rc=$?

echo "== 3/3 pytest-benchmark, GPU cases"
timeout 90 $PY -m pytest -q -p no:cacheprovider benchmarks --benchmark-only -m gpu \
    --benchmark-max-time=0.5 --benchmark-json="$OUT/pytest-benchmark.json" \
    --benchmark-columns=median,min,max,rounds
suite_rc=$?

echo "== exit codes: sweep $sweep_rc, benchmark suite $suite_rc"
[ "$sweep_rc" -eq 0 ] && [ "$suite_rc" -eq 0 ]
