"""The stand-in's devices: H100-like (132 SMs, compute capability 9.0, 80 GiB), as many as
``GPUNET_STANDIN_DEVICES`` says (default 1); ``cupy.cuda.Device`` and its attributes."""
from __future__ import annotations

import os

from . import _errors, _streams

MULTIPROCESSORS = 132
COMPUTE_CAPABILITY = (9, 0)
TOTAL_MEMORY = 80 * 2**30
NAME = b"CuPy stand-in (NumPy on the CPU, H100-like)"


class _Switch:
    """Whether the stand-in's devices answer (see ``install.py``) and which is current."""

    present = True
    current = 0


switch = _Switch()


def count() -> int:
    if not switch.present:
        raise _errors.CUDARuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")
    return int(os.environ.get("GPUNET_STANDIN_DEVICES", "1"))


def current_id() -> int:
    count()
    return switch.current


def check(device_id: int) -> int:
    if not 0 <= device_id < count():
        raise _errors.CUDARuntimeError("cudaErrorInvalidDevice: invalid device ordinal")
    return device_id


def host_free_bytes() -> int:
    """Memory the host can still give the stand-in's arrays (its 'device' memory)."""
    try:
        with open("/proc/meminfo") as info:
            for line in info:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 * 2**30


ATTRIBUTES = {"MultiProcessorCount": MULTIPROCESSORS,
              "ComputeCapabilityMajor": COMPUTE_CAPABILITY[0],
              "ComputeCapabilityMinor": COMPUTE_CAPABILITY[1],
              "MaxThreadsPerBlock": 1024, "WarpSize": 32,
              "MaxSharedMemoryPerBlock": 49152, "MaxGridDimY": 65535, "MaxGridDimX": 2**31 - 1}


class Device:
    """``cupy.cuda.Device(device=None)``: ``id``, ``use()``, ``synchronize()``,
    ``compute_capability``, ``attributes``, ``mem_info``."""

    def __init__(self, device=None):
        self.id = current_id() if device is None else int(device)

    def __int__(self):
        return self.id

    def __repr__(self):
        return f"<CUDA Device {self.id}>"

    def __eq__(self, other):
        return isinstance(other, Device) and other.id == self.id

    def __hash__(self):
        return self.id

    def __enter__(self):
        self._previous = switch.current
        switch.current = check(self.id)
        return self

    def __exit__(self, *args):
        switch.current = self._previous

    def use(self):
        switch.current = check(self.id)
        return self

    def synchronize(self) -> None:
        check(self.id)
        _streams.device_synchronize()

    @property
    def compute_capability(self) -> str:
        check(self.id)
        return "%d%d" % COMPUTE_CAPABILITY

    @property
    def attributes(self) -> dict:
        check(self.id)
        return dict(ATTRIBUTES)

    @property
    def mem_info(self) -> tuple[int, int]:
        check(self.id)
        return mem_get_info()


def mem_get_info() -> tuple[int, int]:
    """``(free, total)``: the card's total; free is what the host can still give."""
    from . import _memory

    return min(host_free_bytes(), TOTAL_MEMORY - _memory.pool.used_bytes()), TOTAL_MEMORY


def properties(device_id: int) -> dict:
    """``cupy.cuda.runtime.getDeviceProperties``' keys that gpunet reads, and a few more."""
    check(device_id)
    return {"name": NAME, "totalGlobalMem": TOTAL_MEMORY,
            "multiProcessorCount": MULTIPROCESSORS, "major": COMPUTE_CAPABILITY[0],
            "minor": COMPUTE_CAPABILITY[1], "warpSize": 32, "maxThreadsPerBlock": 1024,
            "sharedMemPerBlock": 49152, "clockRate": 1_980_000, "memoryClockRate": 2_619_000,
            "memoryBusWidth": 5120}
