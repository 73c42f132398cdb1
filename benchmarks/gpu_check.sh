#!/usr/bin/env bash
# The device check: one call that verifies the whole GPU path, in under 8 minutes on one H100
# (so a 15-minute lease can run it twice).
#   bash benchmarks/gpu_check.sh                # into $OUT, else benchmarks/results/<gpu>-<date>/
#   bash benchmarks/gpu_check.sh --full-sweep   # probe, warm, tests, then the long sweep
#   bash benchmarks/gpu_check.sh --dry-run      # the plumbing on the CPU (any GPU hidden)
# Runs from the source tree with the machine's own Python (PYTHON=... to choose), installs
# nothing, needs no network. Stages, by value, each under `timeout` and all within one deadline:
#   probe      the GPU through CuPy; driver, CUDA, CuPy, NumPy, PyTorch versions
#              (no GPU answers: a FAIL line and exit 1, nothing else runs)
#   warm       compile every kernel module once (NVRTC, into CuPy's kernel cache), timed
#   tests      every GPU-marked test (kernels against NumPy, fallbacks, graph capture, CPU/GPU
#              agreement, ...), all failures reported; the CPU-only rest of the suite is CI's
#   canary     compute-sanitizer memcheck over one deliberate out-of-bounds read: proves the
#              runtime lets the sanitizer instrument kernels (else: "REFUSED", said plainly)
#   memcheck, racecheck   compute-sanitizer over benchmarks/gpu_sanitize.py: a short training
#              run on odd shapes, then the kernel tests at small shapes
#   kernels    benchmarks/gpu_check.py: each fused kernel vs unfused, GEMM routes, train step
#   graph      benchmarks/graph_probe.py: which GEMM a CUDA graph captures, tile timings
#   sweep      gpunet bench --device gpu: every GPU variant this machine has (PyTorch without
#              CUDA is skipped with a note, not a failure) at batch 32 256 4096 65536, exact
#              float32 (TF32 off); --full-sweep: every batch size 32..65536 with the full
#              timing settings and the two plots, instead of the sanitizers, kernels and graph
# Writes at most 8 files, to commit unchanged as benchmarks/results/<gpu>-<date>/:
#   gpu_check.log summary.json pytest.xml kernels.json graph.json bench.json bench.md
#   sanitizer.log (--full-sweep: throughput.png and speedup.png instead of kernels.json,
#   graph.json and sanitizer.log). The verdict counts skips apart from failures, each with its
#   reason. Exit 0 only when summary.json's verdict is "pass".
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export GPUNET_TEST_CUDA=device  # its GPU tests check this machine's device, never the stand-in
unset CUPY_TF32 NVIDIA_TF32_OVERRIDE  # exact float32: the GPU must match the CPU
PY=${PYTHON:-$(command -v python3 || command -v python)}

mode=check
case "${1:-}" in
    "") ;;
    --full-sweep) mode=full-sweep ;;
    --dry-run) mode=dry-run ;;
    -h | --help) sed -n '2,/^set -uo/{/^set -uo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    *) echo "gpu_check.sh: unknown option '$1' (expected --full-sweep, --dry-run or none)" >&2
       exit 2 ;;
esac

# Seconds per stage (they add up to TOTAL_S); a stage gets less when the deadline is nearer.
# Budgeted for an H100 (the card a plain device call gets); benchmarks/results/STAGES.md
# gives each stage's time measured on the CUDA stand-in and the estimate for the device.
TOTAL_S=450  # + at most 10 s to stop the last stage, + the summary: under 8 minutes
declare -A BUDGET=([probe]=25 [warm]=45 [tests]=150 [canary]=20 [memcheck]=45 [racecheck]=35
                   [kernels]=40 [graph]=30 [sweep]=60)
# No --variants: gpunet bench runs every GPU variant the machine has and records why it
# skipped the others (PyTorch without CUDA), where naming torch would fail the stage.
SWEEP=(--device gpu --batch-sizes 32 256 4096 65536 --quick --warmup 5)
SWEEP_FILES=(bench.json bench.md)
# Every GPU case; the rest of the suite runs on the CPU in CI (all of it no longer fits here).
TESTS=(tests -m gpu --ignore=tests/test_packaging.py --ignore=tests/test_fashion_mnist.py)
shopt -s nullglob
KERNEL_TESTS=(tests/test_cupy*.py tests/test_launcher*.py)  # run under the sanitizers
shopt -u nullglob
if [ "$mode" = full-sweep ]; then
    TOTAL_S=570; BUDGET[sweep]=395  # probe + warm + tests + sweep
    SWEEP=(--device gpu)  # batch 32..65536, full settings
    SWEEP_FILES+=(throughput.png speedup.png)
elif [ "$mode" = dry-run ]; then
    export CUDA_VISIBLE_DEVICES=""  # the CPU only, even where a GPU is present
    :  # the same GPU cases: each must skip, with its reason
    SWEEP=(--device cpu --variants numpy gemm-floor --batch-sizes 32 --samples 256
           --repeats 1 --warmup 0 --epochs 1 --steps 1)
fi

if [ -z "${OUT:-}" ]; then
    if [ "$mode" = dry-run ]; then
        OUT=$(mktemp -d)/gpu-check-dry-run
    else
        OUT="benchmarks/results/$("$PY" benchmarks/gpu_summary.py dirname)"
    fi
fi
if [ -d "$OUT" ] && [ -n "$(ls -A "$OUT")" ]; then
    echo "gpu_check.sh: $OUT is not empty; give an empty or new folder as OUT=..." >&2
    exit 2
fi
mkdir -p "$OUT" || exit 2
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
DEADLINE=$((SECONDS + TOTAL_S))
touch "$WORK/stages.tsv"

record() {  # record NAME RC SECONDS BUDGET [NOTE]: one line of stages.tsv (RC "-": not run)
    printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "${5:-}" >> "$WORK/stages.tsv"
}

clamp() {  # clamp NAME: the stage's budget, cut to what is left before the deadline
    local left=$((DEADLINE - SECONDS)) budget=${BUDGET[$1]}
    echo $((budget < left ? budget : left))
}

stage() {  # stage NAME COMMAND...: run under its budget; output to $STAGE_LOG when set
    local name=$1 budget start rc
    shift
    budget=$(clamp "$name")
    if [ "$budget" -lt 10 ]; then
        echo "== $name: NOT RUN: the overall time budget is spent"
        record "$name" - 0 0 "the time budget was spent"
        return 1
    fi
    echo "== $name (at most $budget s): $*"
    start=$SECONDS
    if [ -n "${STAGE_LOG:-}" ]; then
        timeout --signal=INT --kill-after=10 "$budget" "$@" > "$STAGE_LOG" 2>&1
    else
        timeout --signal=INT --kill-after=10 "$budget" "$@"
    fi
    rc=$?
    record "$name" "$rc" $((SECONDS - start)) "$budget"
    case $rc in
        0) echo "-- $name: ok ($((SECONDS - start)) s)" ;;
        124 | 137) echo "-- $name: TIMED OUT after $budget s" ;;
        *) echo "-- $name: FAILED, exit status $rc ($((SECONDS - start)) s)" ;;
    esac
    return "$rc"
}

not_run() {  # not_run WHY NAME...: say plainly that these stages did not run, and why
    local why=$1 name
    shift
    for name in "$@"; do
        echo "== $name: NOT RUN: $why"
        record "$name" - 0 0 "$why"
    done
}

sanitize() {  # the canary, then memcheck and racecheck over benchmarks/gpu_sanitize.py
    local tool budget sanitizer
    sanitizer=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer \
                2> /dev/null | head -n 1)
    if [ -z "$sanitizer" ]; then
        not_run "compute-sanitizer is not installed on this machine" memcheck racecheck
        return
    fi
    if [ "$mode" = dry-run ]; then
        not_run "a dry run (compute-sanitizer is at $sanitizer)" memcheck racecheck
        return
    fi
    STAGE_LOG=$WORK/canary.log stage canary "$sanitizer" --tool memcheck \
        "$PY" benchmarks/gpu_sanitize.py --canary
    { echo "==== canary: $sanitizer --tool memcheck (a deliberate out-of-bounds read)"
      cat "$WORK/canary.log"; } >> "$OUT/sanitizer.log"
    if ! grep -q '^=========.*gpunet_sanitizer_canary' "$WORK/canary.log"; then
        echo "compute-sanitizer: REFUSED by this runtime: its canary (a deliberate"\
             "out-of-bounds read) was not reported. Last lines:"
        grep -v '^[[:space:]]*$' "$WORK/canary.log" | tail -n 3
        not_run "refused by the runtime (the canary was not reported)" memcheck racecheck
        return
    fi
    echo "-- compute-sanitizer instruments kernels here: the canary was reported"
    for tool in memcheck racecheck; do
        budget=$(clamp "$tool")
        STAGE_LOG=$WORK/$tool.log stage "$tool" "$sanitizer" --tool "$tool" \
            --error-exitcode 86 --print-limit 20 "$PY" benchmarks/gpu_sanitize.py \
            --deadline $(($(date +%s) + budget - 12)) --junitxml "$WORK/$tool.xml" \
            "${KERNEL_TESTS[@]}"
        grep -E 'SUMMARY|FAILED|passed|failed|left out' "$WORK/$tool.log" | tail -n 6
        { echo "==== $tool: $sanitizer --tool $tool"; cat "$WORK/$tool.log"; } \
            >> "$OUT/sanitizer.log"
    done
}

sweep() {  # gpunet bench into a scratch folder, then only SWEEP_FILES into $OUT
    stage sweep "$PY" -m gpunet bench "${SWEEP[@]}" --out "$WORK/sweep"
    local rc=$? name
    for name in "${SWEEP_FILES[@]}"; do
        if [ -f "$WORK/sweep/$name" ]; then cp "$WORK/sweep/$name" "$OUT/"; fi
    done
    return $rc
}

summarize() {  # summary.json and the verdict; exit status 0 only for "pass" (or a dry run)
    local sanitizers=() tool rc files
    if [ "$mode" != full-sweep ]; then
        for tool in memcheck racecheck; do
            sanitizers+=(--sanitizer "$tool" "$WORK/$tool.log" "$WORK/$tool.xml")
        done
    fi
    echo "== summary"
    "$PY" benchmarks/gpu_summary.py summarize --out "$OUT/summary.json" \
        --device "$WORK/device.json" --stages "$WORK/stages.tsv" --tests "$OUT/pytest.xml" \
        --kernels "$OUT/kernels.json" --graph "$OUT/graph.json" --sweep "$OUT/bench.json" \
        "${sanitizers[@]}" \
        --commit "$(git rev-parse --short HEAD 2> /dev/null)" --mode "$mode"
    rc=$?
    files=$(ls -A "$OUT" | wc -l)
    if [ "$files" -gt 8 ]; then
        echo "FAIL: $files files in $OUT, more than the 8 a result folder may hold"
        rc=1
    fi
    echo "== $files files in $OUT ($((SECONDS)) s in all)"
    return $rc
}

main() {
    echo "== gpu_check ($mode) $(date -u +%FT%TZ) at $(git rev-parse --short HEAD 2> /dev/null \
         || echo 'an unknown commit'), Python $PY, into $OUT"
    if command -v nvidia-smi > /dev/null; then
        timeout 20 nvidia-smi || echo "nvidia-smi: failed (exit status $?)"
    else
        echo "nvidia-smi: not installed here"
    fi
    if ! stage probe "$PY" benchmarks/gpu_summary.py probe "$WORK/device.json" \
            && [ "$mode" != dry-run ]; then
        echo "FAIL: the probe found no usable GPU (see above): nothing of the GPU path ran"
        not_run "no GPU answers" warm tests memcheck racecheck kernels graph sweep
        summarize
        return 1
    fi
    if [ "$mode" = dry-run ]; then
        not_run "it needs a GPU (a dry run)" warm
    else
        stage warm "$PY" -c 'import time, gpunet
start = time.perf_counter(); gpunet.warmup()
print(f"every kernel module compiled or loaded from the cache in {time.perf_counter() - start:.1f} s")'
    fi
    stage tests "$PY" -m pytest "${TESTS[@]}" -p no:cacheprovider -p benchmarks.gpu_summary \
        -q -rfEs --tb=short --durations=15 --junitxml="$OUT/pytest.xml"
    if [ "$mode" != full-sweep ]; then
        sanitize
        if [ "$mode" = dry-run ]; then
            not_run "it needs a GPU (a dry run)" kernels graph
        else
            stage kernels "$PY" benchmarks/gpu_check.py --out "$OUT/kernels.json"
            stage graph "$PY" benchmarks/graph_probe.py --out "$OUT/graph.json"
        fi
    fi
    sweep
    summarize
}

main 2>&1 | tee "$OUT/gpu_check.log"
exit "${PIPESTATUS[0]}"
