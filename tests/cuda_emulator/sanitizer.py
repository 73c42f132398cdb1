"""Runs the emulator under AddressSanitizer + UndefinedBehaviorSanitizer: the CPU's stand-in
for compute-sanitizer's memcheck.

A sanitized module (``GPUNET_EMULATOR_SANITIZE=1``) is loaded into Python by ctypes, so ASan's
runtime must be loaded first: run the process with :func:`sanitizer_env`, which preloads g++'s
libasan, makes any ASan or UBSan report fatal, and selects the sanitized flavour, e.g.
``subprocess.run([sys.executable, script], env=sanitizer_env())``.
"""
from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path

from .build import CompileError, compiler


@functools.lru_cache(maxsize=None)
def libasan() -> Path:
    """g++'s ASan runtime (``g++ -print-file-name=libasan.so``)."""
    if compiler() is None:
        raise CompileError("g++ is not installed: the sanitized emulator needs it")
    found = subprocess.run([compiler(), "-print-file-name=libasan.so"], capture_output=True,
                           text=True, check=True).stdout.strip()
    path = Path(found).resolve()
    if not path.is_absolute() or not path.exists():
        raise CompileError(f"g++ has no AddressSanitizer runtime ({found!r}); install "
                           f"libasan for g++ (Debian: libgcc-12-dev)")
    return path


def sanitizer_env(base: dict | None = None) -> dict[str, str]:
    """The environment of a process whose emulated kernels run sanitized."""
    env = dict(os.environ if base is None else base)
    env["LD_PRELOAD"] = " ".join(filter(None, [str(libasan()), env.get("LD_PRELOAD", "")]))
    # Python itself leaks by design at exit; any other report ends the process with an error.
    env["ASAN_OPTIONS"] = "detect_leaks=0:halt_on_error=1:exitcode=86"
    env["UBSAN_OPTIONS"] = "print_stacktrace=1:halt_on_error=1:exitcode=87"
    env["GPUNET_EMULATOR_SANITIZE"] = "1"
    return env


def require_preloaded_asan() -> None:
    """Raise unless this process runs with ASan's runtime loaded (else loading a sanitized
    module would abort it)."""
    maps = Path("/proc/self/maps").read_text()
    if "libasan" not in maps:
        raise RuntimeError("sanitized emulator modules need ASan's runtime preloaded: run the "
                           "process with cuda_emulator.sanitizer.sanitizer_env() "
                           f"(LD_PRELOAD={libasan()})")
