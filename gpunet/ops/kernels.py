"""Finds the CUDA C sources in ``kernels/`` and compiles each module once per process.

Nothing compiles at import: :func:`get_kernel` builds a module's ``cupy.RawModule`` on first
use (CuPy's on-disk cache keeps later processes fast) and :func:`warmup` builds them all.
``MODULES`` lists every kernel each source defines, as the NVRTC name expressions that the
runtime fetches and that the CPU-only compile test instantiates.
"""
from __future__ import annotations

import functools
from pathlib import Path

COMPILE_OPTIONS = ("--std=c++17",)


def _gemm_variants():
    """The (TA, TB, HAS_BIAS, RELU) instantiations the ops use (see kernels/gemm.cu)."""
    forward = [(False, True, bias, relu) for bias in (True, False) for relu in (True, False)]
    return forward + [(True, False, False, False), (False, False, False, False)]


def gemm_name(trans_a: bool, trans_b: bool, has_bias: bool, relu: bool) -> str:
    """The name expression of one instantiation of the tiled GEMM."""
    flags = ", ".join("true" if f else "false" for f in (trans_a, trans_b, has_bias, relu))
    return f"gemm_bias_act<{flags}>"


MODULES = {
    "linear_relu": (
        "bias_act_inplace<true, true>", "bias_act_inplace<true, false>",
        "bias_act_inplace<false, true>",
        "mask_bias_grad_partial<true>", "mask_bias_grad_partial<false>", "sum_partials",
    ),
    "softmax_xent": (
        "softmax_xent_rows<int>", "softmax_xent_rows<long long>", "softmax_xent_finish",
        "check_label_range<int>", "check_label_range<long long>",
    ),
    "optim": ("sgd_update", "adam_update"),
    "gemm": tuple(gemm_name(*v) for v in _gemm_variants()),
}


def kernel_dir() -> Path:
    """The folder holding the ``.cu`` files: ``gpunet/kernels`` in an installed wheel,
    the repository's top-level ``kernels/`` in a source checkout or editable install."""
    package = Path(__file__).resolve().parent.parent
    candidates = (package / "kernels", package.parent / "kernels")
    for folder in candidates:
        if all((folder / f"{name}.cu").is_file() for name in MODULES):
            return folder
    raise FileNotFoundError(
        f"gpunet's CUDA kernel sources ({', '.join(n + '.cu' for n in MODULES)}) were not "
        f"found in {' or '.join(str(c) for c in candidates)}; reinstall gpunet"
    )


def read_source(module: str) -> str:
    """The CUDA C source of one module (``"gemm"``, ``"optim"``, ...)."""
    if module not in MODULES:
        raise KeyError(f"unknown kernel module {module!r}; expected one of {sorted(MODULES)}")
    return (kernel_dir() / f"{module}.cu").read_text()


@functools.lru_cache(maxsize=None)
def _raw_module(module: str):
    import cupy

    return cupy.RawModule(code=read_source(module), options=COMPILE_OPTIONS,
                          name_expressions=MODULES[module])


@functools.lru_cache(maxsize=None)
def get_kernel(module: str, name: str):
    """The compiled kernel ``name`` (a name expression of ``MODULES[module]``)."""
    if name not in MODULES.get(module, ()):
        raise KeyError(f"{name!r} is not a kernel of module {module!r}; expected one of "
                       f"{MODULES.get(module, sorted(MODULES))}")
    return _raw_module(module).get_function(name)


def warmup() -> None:
    """Compile every module and fetch every kernel (call before timing)."""
    for module, names in MODULES.items():
        for name in names:
            get_kernel(module, name).compile()
