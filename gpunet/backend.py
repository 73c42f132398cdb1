"""The one place that decides NumPy (CPU) or CuPy (GPU): array module, ops, RNG, probes.

Everything above this module asks a :class:`Backend` for its array module (``xp``), its
primitive ops and its random numbers; only this module and ``ops/cupy_ops.py`` import cupy,
and only lazily, so a machine without CuPy (or with CuPy but no GPU) runs the CPU path.
"""
from __future__ import annotations

import ctypes
import functools
from typing import Any

import numpy as np

from .checks import check_int

DEVICES = ("cpu", "gpu", "auto")


class BackendUnavailable(RuntimeError):
    """Raised when ``"gpu"`` is asked for where it cannot work; the message says why."""


class _SeedState:
    """The seed set by :func:`manual_seed`; generators are rebuilt from it on demand."""

    seed: int | None = None
    generation = 0  # bumped by manual_seed so backends rebuild their generators


_seed_state = _SeedState()


def manual_seed(seed: int) -> None:
    """Make initialisation, shuffling and dropout reproducible on every backend."""
    _seed_state.seed = check_int(seed, "seed", 0)
    _seed_state.generation += 1


class Backend:
    """One device: its array module ``xp``, its ``ops`` and its seeded random generators.

    ``host_rng`` (always NumPy) draws initial weights, so a seeded model starts identical on
    the CPU and the GPU; ``rng`` lives on the device and draws shuffles and dropout masks.
    """

    def __init__(self, name: str, xp, ops_factory):
        self.name = name
        self.xp = xp
        self._ops_factory = ops_factory
        self._ops = None
        self._rng_generation = -1
        self._host_rng: np.random.Generator | None = None
        self._rng: Any = None  # numpy's or cupy's RandomState

    def __repr__(self) -> str:
        return f"Backend({self.name!r})"

    def __reduce__(self):
        """Pickled (and deep-copied) by its device name: unpickling gives this process's
        backend for that device, or BackendUnavailable saying why there is none."""
        return get_backend, (self.name,)

    @property
    def ops(self):
        """The primitive ops for this device (created on first use; nothing compiles here)."""
        if self._ops is None:
            self._ops = self._ops_factory()
        return self._ops

    @ops.setter
    def ops(self, ops):
        """Swap the ops implementation (benchmarks compare fused and unfused variants)."""
        self._ops = ops

    def _refresh_rngs(self) -> None:
        if self._rng_generation != _seed_state.generation:
            seed = _seed_state.seed
            self._host_rng = np.random.default_rng(seed)
            self._rng = self.xp.random.RandomState(seed)
            self._rng_generation = _seed_state.generation

    @property
    def host_rng(self) -> np.random.Generator:
        """NumPy generator for initial weights (same numbers whatever the device)."""
        self._refresh_rngs()
        assert self._host_rng is not None
        return self._host_rng

    def permutation(self, n: int):
        """A random permutation of ``range(n)`` as a device array (for shuffling)."""
        self._refresh_rngs()
        return self._rng.permutation(n)

    def uniform(self, shape, dtype):
        """Uniform [0, 1) samples of ``dtype`` on the device (for dropout masks)."""
        self._refresh_rngs()
        return self._rng.random_sample(shape).astype(dtype, copy=False)

    def check_array(self, a, what: str = "input") -> None:
        """Raise TypeError unless ``a`` is an array of this backend's module."""
        if not isinstance(a, self.xp.ndarray):
            fix = "gpunet.to_numpy(a)" if self.name == "cpu" else "cupy.asarray(a)"
            raise TypeError(
                f"{what} must be a {self.xp.__name__}.ndarray for the {self.name} backend, "
                f"got {type(a).__module__}.{type(a).__name__}; move it with {fix} "
                f"or move the model with model.to(...)"
            )

    def asarray(self, a, dtype=None):
        """Copy host or device data onto this backend (used when moving models and data)."""
        if self.name == "cpu":
            return np.asarray(to_numpy(a), dtype=dtype)
        return self.xp.asarray(a, dtype=dtype)


def _numpy_ops():
    from .ops.numpy_ops import NumpyOps

    return NumpyOps(np)


def _cupy_ops():
    from .ops.cupy_ops import CupyOps

    return CupyOps()


def _driver_loads() -> bool:
    """Whether the NVIDIA driver library can be loaded at all."""
    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    return True


INSTALL_HINT = ('install the extra that matches the "CUDA Version" nvidia-smi shows: '
                'pip install -e ".[cuda13]" for 13.x, pip install -e ".[cuda12]" for 12.x '
                "(README: The GPU path)")


def _compile_probe(cupy) -> None:
    """Compile and run a CuPy reduction and one of gpunet's own kernel modules: both need
    NVRTC and the CUDA headers, which a driver alone does not bring."""
    from .ops.launchers import optim

    cupy.arange(4, dtype=cupy.float32).sum().get()
    optim.SOURCE.warmup()


@functools.lru_cache(maxsize=None)
def gpu_status() -> tuple[bool, str]:
    """Probe once whether CuPy imports, a CUDA device answers and kernels compile:
    ``(ok, reason)``, the reason naming the fix where there is one."""
    try:
        import cupy
    except ImportError as exc:
        return False, f"CuPy is not installed ({exc}); {INSTALL_HINT}"
    except Exception as exc:  # a broken CuPy install must not break the CPU path
        return False, f"CuPy failed to import: {exc}; reinstall it: {INSTALL_HINT}"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        text = str(exc)
        if not _driver_loads():
            return False, "no NVIDIA driver is installed (libcuda.so.1 cannot be loaded)"
        if "InsufficientDriver" in text or "driver version is insufficient" in text:
            return False, (f"the NVIDIA driver is too old for this CuPy build ({text}); "
                           f"update the driver, or {INSTALL_HINT}")
        return False, f"no CUDA device answers ({text})"
    if count == 0:
        return False, "no CUDA device found"
    try:
        cupy.cuda.Device(0).compute_capability
        cupy.zeros(4, dtype=cupy.float32).get()
    except Exception as exc:
        return False, f"the CUDA device does not work through CuPy ({exc})"
    try:
        _compile_probe(cupy)
    except Exception as exc:
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return False, (f"CuPy is installed but cannot compile kernels: {first_line}; the "
                       f"CUDA headers and NVRTC come with the extra: {INSTALL_HINT}")
    return True, "ok"


def _require_gpu(what: str) -> None:
    ok, reason = gpu_status()
    if not ok:
        raise BackendUnavailable(f"{what} needs the GPU backend, which is unavailable: {reason}")


def set_tf32(enabled: bool) -> None:
    """Let cuBLAS run float32 GEMMs on TF32 tensor cores (faster, ~1e-3 relative error).

    Off by default so the GPU matches the CPU; ``CUPY_TF32=1`` in the environment (read by
    CuPy at the first GEMM) also turns it on. The fused kernels always compute in float32.
    """
    if not isinstance(enabled, bool):
        raise TypeError(f"set_tf32 expects True or False, got {enabled!r}")
    _require_gpu("set_tf32")
    from cupy import _core
    from cupy._core import _routines_linalg as linalg

    mode = linalg.COMPUTE_TYPE_TF32 if enabled else linalg.COMPUTE_TYPE_DEFAULT
    _core.set_compute_type(np.float32, mode)


def warmup() -> None:
    """Compile every GPU kernel now (CuPy caches them on disk), e.g. before timing."""
    _require_gpu("warmup")
    from .ops.cupy_ops import warmup as compile_all_kernels

    compile_all_kernels()


@functools.lru_cache(maxsize=None)
def _make_backend(name: str) -> Backend:
    if name == "cpu":
        return Backend("cpu", np, _numpy_ops)
    import cupy

    return Backend("gpu", cupy, _cupy_ops)


def get_backend(device: str | Backend = "cpu") -> Backend:
    """The backend for ``"cpu"``, ``"gpu"`` or ``"auto"`` (GPU when one answers, else CPU)."""
    if isinstance(device, Backend):
        return device
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    if device == "auto":
        device = "gpu" if gpu_status()[0] else "cpu"
    if device == "gpu":
        ok, reason = gpu_status()
        if not ok:
            raise BackendUnavailable(f"the GPU backend is unavailable: {reason}")
    return _make_backend(device)


def backend_of(a) -> Backend:
    """The backend whose array module made ``a`` (NumPy arrays and scalars: CPU)."""
    if type(a).__module__.startswith("cupy"):
        return _make_backend("gpu")
    return _make_backend("cpu")


def to_numpy(a) -> np.ndarray:
    """A NumPy copy (or view, for NumPy input) of a NumPy or CuPy array."""
    if type(a).__module__.startswith("cupy"):
        return a.get()
    return np.asarray(a)


def select_gpu(index: int) -> None:
    """Make GPU ``index`` (modulo the device count) current, before anything touches a device
    (a data-parallel rank takes the GPU of its local rank); nothing where no GPU answers."""
    try:
        import cupy

        count = cupy.cuda.runtime.getDeviceCount()
    except Exception:
        return  # no usable GPU: get_backend says why where one is asked for
    if count:
        cupy.cuda.Device(index % count).use()


def nccl():
    """CuPy's NCCL bindings (``cupy.cuda.nccl``); ImportError where NCCL is missing: CuPy's
    module then holds only ``available = False`` (``cupy/cuda/nccl.py``), no functions."""
    from cupy.cuda import nccl as bindings

    if not getattr(bindings, "available", False):
        raise ImportError("CuPy found no NCCL library (cupy.cuda.nccl.available is False)")
    return bindings
