"""Every kernel source compiles through NVRTC for sm_80 and sm_90, no GPU or driver needed,
with the launch sizes its launcher passes; each .cu is paired with exactly one launcher."""
import importlib
import pkgutil
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from gpunet.ops import kernels, launchers

LAUNCHERS = {name: importlib.import_module(f"gpunet.ops.launchers.{name}")
             for _, name, _ in pkgutil.iter_modules(launchers.__path__)}
SOURCES = {name: module.SOURCE for name, module in LAUNCHERS.items()}

ARCHS = ("sm_80", "sm_90")
# Options cupy.RawModule adds to ours when it compiles at run time.
CUPY_OPTIONS = ("-ftz=true", "--device-as-default-execution-space")
GLOBAL_KERNEL = re.compile(r"__global__\s+void\s+(?:__launch_bounds__\([^)]*\)\s*)?(\w+)")


@pytest.fixture(scope="module")
def nvrtc():
    try:
        from cupy_backends.cuda.libs import nvrtc as lib

        lib.getVersion()
    except Exception as exc:  # no CuPy, or CuPy without a loadable libnvrtc
        pytest.skip(f"NVRTC cannot load here ({type(exc).__name__}: {exc}); "
                    f"pip install cupy-cuda13x 'nvidia-cuda-nvrtc==13.*'")
    return lib


def _compile(nvrtc, source, arch, options=None):
    """Compile one source with the runtime's options; return (lowered names, log, cubin)."""
    prog = nvrtc.createProgram(source.read(), f"{source.name}.cu", [], [])
    try:
        for name in source.kernels:
            nvrtc.addNameExpression(prog, name)
        options = source.options if options is None else options
        try:
            nvrtc.compileProgram(prog, [f"--gpu-architecture={arch}", *options, *CUPY_OPTIONS])
        except nvrtc.NVRTCError as exc:
            raise AssertionError(f"{source.name}.cu does not compile for {arch}: {exc}\n"
                                 f"{nvrtc.getProgramLog(prog)}") from None
        lowered = [nvrtc.getLoweredName(prog, name) for name in source.kernels]
        return lowered, nvrtc.getProgramLog(prog), nvrtc.getCUBIN(prog)
    finally:
        nvrtc.destroyProgram(prog)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("module", sorted(SOURCES))
def test_kernel_module_compiles_without_warnings(nvrtc, module, arch):
    source = SOURCES[module]
    lowered, log, cubin = _compile(nvrtc, source, arch)
    assert "warning" not in log.lower(), log
    assert len(set(lowered)) == len(lowered)
    for name, mangled in zip(source.kernels, lowered):
        base = name.split("<")[0]
        assert base in mangled, f"{name} lowered to {mangled!r}"
    assert cubin[:4] == b"\x7fELF"


@pytest.mark.parametrize("module", sorted(m for m in SOURCES if SOURCES[m].defines))
def test_launch_sizes_come_only_from_the_launcher(nvrtc, module):
    """A source compiled without its launcher's -D sizes refuses to compile (no second copy of
    a launch size hides in the .cu), and no size is #defined in the source itself."""
    source = SOURCES[module]
    text = source.read()
    for key, _ in source.defines:
        assert not re.search(rf"#define\s+{key}\b", text), f"{module}.cu defines {key} itself"
    with pytest.raises(AssertionError, match="does not compile"):
        _compile(nvrtc, source, ARCHS[0], options=kernels.BASE_OPTIONS)


def test_every_source_has_one_launcher_and_lists_its_kernels():
    on_disk = {p.stem for p in kernels.kernel_dir().glob("*.cu")}
    assert on_disk == set(SOURCES), "each kernels/NAME.cu needs gpunet/ops/launchers/NAME.py"
    for name, source in SOURCES.items():
        assert source.name == name
        text = source.read()
        defined = set(GLOBAL_KERNEL.findall(text))
        fetched = {expr.split("<")[0] for expr in source.kernels}
        assert defined == fetched, f"{name}.cu defines {defined}, the launcher lists {fetched}"
        header = text[:2000]
        for mention in (f"gpunet/ops/launchers/{name}.py", "NumPy reference", "Tests:"):
            assert mention in header, f"{name}.cu's header comment does not name {mention!r}"


def test_unknown_kernel_is_a_clear_error():
    with pytest.raises(KeyError, match="not a kernel of optim.cu"):
        SOURCES["optim"].function("lamb_update")


def test_importing_the_library_compiles_nothing_and_needs_no_cupy():
    code = ("import sys, gpunet, gpunet.ops.kernels as k; "
            "assert 'cupy' not in sys.modules, 'import gpunet imported cupy'; "
            "assert 'gpunet.ops.cupy_ops' not in sys.modules; print('ok')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_wheel_packages_cover_every_subpackage_and_the_kernels():
    """pyproject lists packages explicitly (to map kernels/ to gpunet/kernels): keep it whole."""
    root = Path(__file__).resolve().parents[1]
    config = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    on_disk = {".".join(p.parent.relative_to(root).parts)
               for p in (root / "gpunet").rglob("__init__.py")}
    assert set(config["packages"]) == on_disk | {"gpunet.kernels"}
    assert config["package-dir"]["gpunet.kernels"] == "kernels"
    assert "*.cu" in config["package-data"]["gpunet.kernels"]
