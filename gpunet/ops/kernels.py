"""Finds the CUDA C sources in ``kernels/`` and lists the kernels each one defines.

``MODULES`` holds, per source, the NVRTC name expressions that ``cupy_ops`` compiles (once per
process, on first use) and that the CPU-only compile test instantiates. No CuPy here.
"""
from __future__ import annotations

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


def check_kernel(module: str, name: str) -> None:
    """Raise KeyError unless ``name`` is a name expression of ``MODULES[module]``."""
    if name not in MODULES.get(module, ()):
        raise KeyError(f"{name!r} is not a kernel of module {module!r}; expected one of "
                       f"{MODULES.get(module, sorted(MODULES))}")
