"""Builds a CUDA source into a shared library the emulator runs (g++ and ``runtime/``).

A build takes the source text, the NVRTC options and the name expressions exactly as
``cupy.RawModule`` receives them, and a :class:`Flavour` (plain, sanitized, coverage). It
rewrites each ``__shared__`` declaration so that every resident block has its own copy (the
line numbers stay those of the source), writes a driver exporting a launch and a parameter
signature per name expression, and compiles both with g++. Built libraries are cached on disk
by everything that goes into them: in ``$GPUNET_EMULATOR_CACHE``, else
``<tempdir>/gpunet-cuda-emulator-<uid>``; coverage builds live in the coverage folder, where
their ``.gcda`` counts are written.
"""
from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from gpunet.ops.kernels import kernel_dir

RUNTIME = Path(__file__).resolve().parent / "runtime"
# Each module keeps its own scheduler: nothing but its entry points is visible, and no
# symbol is GNU-unique (the loader would share such a one among all loaded modules).
# -Wno-sign-compare: CUDA code compares threadIdx.x (unsigned) with ints.
COMMON_FLAGS = ("-fPIC", "-shared", "-fvisibility=hidden", "-fno-gnu-unique",
                "-fno-strict-aliasing", "-Wall", "-Werror", "-Wno-unknown-pragmas",
                "-Wno-sign-compare")
SANITIZE_FLAGS = ("-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
                  "-fno-omit-frame-pointer")
# NVRTC options with no meaning for g++ (architecture, fast math, debug info, device mode).
NVRTC_ONLY = {"--gpu-architecture", "-arch", "--use_fast_math", "-use_fast_math", "--fmad",
              "-fmad", "-ftz", "--ftz", "--prec-div", "-prec-div", "--prec-sqrt", "-prec-sqrt",
              "-lineinfo", "--generate-line-info", "-G", "--device-debug", "--restrict",
              "-restrict", "--device-as-default-execution-space", "-default-device",
              "--extra-device-vectorization", "-extra-device-vectorization",
              "--relocatable-device-code", "-rdc", "--dopt", "-dopt", "-dlto", "--dlink-time-opt"}


class CompileError(RuntimeError):
    """g++ refused a source, or the source uses what the emulator does not support."""


@dataclass(frozen=True)
class Flavour:
    """How a module is built: ``sanitize`` (ASan + UBSan; the process must preload libasan,
    see :func:`cuda_emulator.sanitizer.sanitizer_env`), ``coverage`` (a folder: gcov counts),
    ``fibers`` ("native": the x86-64 switch where available, or "ucontext")."""

    sanitize: bool = False
    coverage: Path | None = None
    fibers: str = "native"

    @classmethod
    def from_environment(cls) -> "Flavour":
        """``GPUNET_EMULATOR_SANITIZE=1`` and ``GPUNET_EMULATOR_COVERAGE=DIR``."""
        coverage = os.environ.get("GPUNET_EMULATOR_COVERAGE")
        return cls(sanitize=os.environ.get("GPUNET_EMULATOR_SANITIZE", "") not in ("", "0"),
                   coverage=Path(coverage).resolve() if coverage else None)

    @property
    def name(self) -> str:
        parts = [part for part, on in (("sanitize", self.sanitize), ("coverage", self.coverage),
                                       ("ucontext", self.fibers == "ucontext")) if on]
        return "+".join(parts) or "plain"

    @property
    def flags(self) -> tuple[str, ...]:
        if self.fibers not in ("native", "ucontext"):
            raise ValueError(f"fibers must be 'native' or 'ucontext', got {self.fibers!r}")
        flags = ["-O0" if self.coverage else "-O1" if self.sanitize else "-O2"]
        if self.sanitize:
            flags += SANITIZE_FLAGS
        if self.coverage:
            flags += ["--coverage", "-DEMU_COVERAGE"]
        if self.fibers == "ucontext":
            flags.append("-DEMU_UCONTEXT")
        return tuple(flags)


def compiler() -> str | None:
    """The g++ on PATH, or None."""
    return shutil.which("g++")


@functools.lru_cache(maxsize=None)
def _compiler_version() -> str:
    return subprocess.run([compiler(), "--version"], capture_output=True, text=True,
                          check=True).stdout.splitlines()[0]


def gxx_options(options: tuple[str, ...]) -> list[str]:
    """g++'s options for NVRTC's: the language standard, -D/-U/-I; NVRTC-only ones dropped."""
    standard, translated = "c++17", []
    for option in options:
        key, _, value = option.partition("=")
        if key in ("--std", "-std"):
            standard = value
        elif option.startswith(("-D", "-U", "-I")):
            translated.append(option)
        elif key == "--define-macro":
            translated.append(f"-D{value}")
        elif key == "--include-path":
            translated.append(f"-I{value}")
        elif key not in NVRTC_ONLY:
            raise CompileError(f"the emulator does not know the NVRTC option {option!r}")
    return [f"-std={standard}", *translated]


_SHARED = re.compile(
    r"(?:(?:alignas|__align__)\s*\((?P<align>[^()]*)\)\s*)?(?P<extern>extern\s+)?__shared__\s+"
    r"(?:(?:alignas|__align__)\s*\((?P<align_after>[^()]*)\)\s*)?"
    r"(?P<type>[A-Za-z_][\w:<>\s*]*?)\s*\b(?P<name>[A-Za-z_]\w*)\s*(?P<dims>(?:\[[^\]]*\]\s*)*);")
_COMMENT_OR_STRING = re.compile(r"//[^\n]*|/\*.*?\*/|\"(?:\\.|[^\"\\\n])*\"", re.S)


def rewrite_shared(code: str) -> str:
    """``__shared__ T name[dims];`` -> ``EMU_SHARED(align, T, name, [dims]);`` and
    ``extern __shared__ T name[];`` -> ``EMU_DYNAMIC_SHARED(T, name);``, keeping the line
    count; any other ``__shared__`` outside comments is a CompileError."""
    # Comments and strings blanked (newlines kept), so positions match the source's.
    scan = _COMMENT_OR_STRING.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), code)
    matches = list(_SHARED.finditer(scan))
    for token in re.finditer(r"\b__shared__\b", scan):
        if not any(m.start() <= token.start() < m.end() for m in matches):
            raise CompileError(f"line {scan.count(chr(10), 0, token.start()) + 1}: the "
                               f"emulator supports `[alignas(N)] __shared__ TYPE NAME[dims];` "
                               f"and `extern __shared__ TYPE NAME[];` inside functions, one "
                               f"variable per declaration")
    pieces, done = [], 0
    for match in matches:
        type_, name, dims = match["type"].strip(), match["name"], match["dims"].strip()
        if match["extern"]:
            if dims.replace(" ", "") != "[]":
                raise CompileError(f"extern __shared__ {name} must be an unsized array")
            replacement = f"EMU_DYNAMIC_SHARED({type_}, {name});"
        else:
            align = match["align"] or match["align_after"] or "0"
            replacement = f"EMU_SHARED({align}, {type_}, {name}, {dims});"
        pieces += [code[done:match.start()], replacement + "\n" * match.group(0).count("\n")]
        done = match.end()
    return "".join(pieces) + code[done:]


def origin_of(code: str) -> Path | None:
    """The ``kernels/*.cu`` file whose text ``code`` is, if any (coverage and sanitizer
    reports then name it)."""
    for path in sorted(kernel_dir().glob("*.cu")):
        if path.read_text() == code:
            return path
    return None


def driver(name_expressions: tuple[str, ...]) -> str:
    """The C++ that includes the rewritten source and exports, per name expression i,
    ``emu_launch_i`` and ``emu_signature_i``."""
    lines = ["// Generated by tests/cuda_emulator/build.py.", '#include "cuda_shim.h"',
             '#include "kernel.cu"', '#include "entry.h"', ""]
    for i, expression in enumerate(name_expressions):
        lines += [f"EMU_EXPORT int emu_launch_{i}(const emu::LaunchRequest* request, "
                  f"void** params)",
                  f"{{ return emu::launch(&{expression}, {json.dumps(expression)}, *request, "
                  f"params); }}",
                  f"EMU_EXPORT const char* emu_signature_{i}() "
                  f"{{ return emu::signature(&{expression}); }}"]
    return "\n".join(lines) + "\n"


def cache_root(flavour: Flavour) -> Path:
    """Where built modules of ``flavour`` are kept."""
    if flavour.coverage:
        return flavour.coverage / "modules"
    base = os.environ.get("GPUNET_EMULATOR_CACHE") or Path(
        tempfile.gettempdir()) / f"gpunet-cuda-emulator-{os.getuid()}"
    return Path(base) / flavour.name


@functools.lru_cache(maxsize=None)
def _runtime_digest() -> str:
    """Changes whenever the runtime headers or this builder change."""
    texts = [p.read_text() for p in sorted(RUNTIME.glob("*.h"))] + [Path(__file__).read_text()]
    return hashlib.sha256("\0".join(texts).encode()).hexdigest()


def build(code: str, options: tuple[str, ...], name_expressions: tuple[str, ...],
          flavour: Flavour, path: Path | None = None) -> Path:
    """The shared library for this source, options, kernels and flavour (built once);
    ``path`` is the file ``code`` came from, if known."""
    if compiler() is None:
        raise CompileError("g++ is not installed: the CUDA emulator needs it")
    flags = [*flavour.flags, *COMMON_FLAGS, *gxx_options(options)]
    key = hashlib.sha256(json.dumps([_runtime_digest(), _compiler_version(), code, options,
                                     name_expressions, flags]).encode()).hexdigest()[:24]
    folder = cache_root(flavour) / key
    library = folder / "module.so"
    folder.mkdir(parents=True, exist_ok=True)
    with _locked(folder / "lock"):
        if not library.exists():
            origin = path or origin_of(code) or folder / "source.cu"
            _compile(code, name_expressions, flags, folder, library, Path(origin).resolve())
    return library


@contextlib.contextmanager
def _locked(path: Path):
    """One process builds a module at a time (MPI ranks may ask for it together)."""
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _compile(code: str, name_expressions: tuple[str, ...], flags: list[str], folder: Path,
             library: Path, origin: Path) -> None:
    if not origin.exists():
        origin.write_text(code)  # reports name this copy of a source that is not in kernels/
    (folder / "kernel.cu").write_text(f'#line 1 "{origin}"\n{rewrite_shared(code)}')
    (folder / "driver.cpp").write_text(driver(name_expressions))
    base = [compiler(), *flags, "-I", str(RUNTIME), "-I", str(origin.parent)]
    if "--coverage" in flags:  # the object's folder is where the .gcno/.gcda files go
        steps = [[*base, "-c", str(folder / "driver.cpp"), "-o", str(folder / "driver.o")],
                 [*base, str(folder / "driver.o"), "-o", f"{library}.tmp"]]
    else:
        steps = [[*base, str(folder / "driver.cpp"), "-o", f"{library}.tmp"]]
    for command in steps:
        done = subprocess.run(command, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            raise CompileError(f"g++ failed on {origin.name} ({' '.join(flags)}):\n"
                               f"{done.stderr[-6000:]}")
    os.replace(f"{library}.tmp", library)
