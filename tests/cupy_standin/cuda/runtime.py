"""``cupy.cuda.runtime``: the CUDA runtime calls gpunet and its tests make."""
from __future__ import annotations

from .. import _device, _streams
from .._errors import CUDARuntimeError  # noqa: F401  (cupy.cuda.runtime.CUDARuntimeError)

is_hip = False
_is_hip_environment = False


def getDeviceCount() -> int:
    return _device.count()


def getDevice() -> int:
    return _device.current_id()


def setDevice(device: int) -> None:
    _device.switch.current = _device.check(int(device))


def deviceSynchronize() -> None:
    _streams.device_synchronize()


def getDeviceProperties(device: int) -> dict:
    return _device.properties(int(device))


def memGetInfo() -> tuple[int, int]:
    return _device.mem_get_info()


def runtimeGetVersion() -> int:
    return 13000


def driverGetVersion() -> int:
    return 13000


def streamIsCapturing(stream: int) -> bool:
    return any(c.stream.ptr == stream for c in _streams.capturing())
