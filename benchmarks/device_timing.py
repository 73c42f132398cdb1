"""CUDA-event timing shared by the device benchmarks (gpu_check.py, graph_probe.py)."""
from __future__ import annotations

import statistics

import cupy


def time_ms(fn, samples=9, calls=10, warmup=3):
    """Median milliseconds per call of ``fn`` over ``samples`` event-timed batches of
    ``calls`` calls, on the current stream, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    stream = cupy.cuda.get_current_stream()
    start, end = cupy.cuda.Event(), cupy.cuda.Event()
    times = []
    for _ in range(samples):
        start.record(stream)
        for _ in range(calls):
            fn()
        end.record(stream)
        end.synchronize()
        times.append(cupy.cuda.get_elapsed_time(start, end) / calls)
    return statistics.median(times)
