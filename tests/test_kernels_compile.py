"""Every kernel source compiles through NVRTC for sm_80 and sm_90, no GPU or driver needed."""
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from gpunet.ops import kernels

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


def _compile(nvrtc, module, arch):
    """Compile one module with the runtime's options; return (lowered names, log, cubin)."""
    prog = nvrtc.createProgram(kernels.read_source(module), f"{module}.cu", [], [])
    try:
        for name in kernels.MODULES[module]:
            nvrtc.addNameExpression(prog, name)
        try:
            nvrtc.compileProgram(prog, [f"--gpu-architecture={arch}",
                                        *kernels.COMPILE_OPTIONS, *CUPY_OPTIONS])
        except nvrtc.NVRTCError as exc:
            pytest.fail(f"{module}.cu does not compile for {arch}: {exc}\n"
                        f"{nvrtc.getProgramLog(prog)}")
        lowered = [nvrtc.getLoweredName(prog, name) for name in kernels.MODULES[module]]
        return lowered, nvrtc.getProgramLog(prog), nvrtc.getCUBIN(prog)
    finally:
        nvrtc.destroyProgram(prog)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("module", sorted(kernels.MODULES))
def test_kernel_module_compiles_without_warnings(nvrtc, module, arch):
    lowered, log, cubin = _compile(nvrtc, module, arch)
    assert "warning" not in log.lower(), log
    assert len(set(lowered)) == len(lowered)
    for name, mangled in zip(kernels.MODULES[module], lowered):
        base = name.split("<")[0]
        assert base in mangled, f"{name} lowered to {mangled!r}"
    assert cubin[:4] == b"\x7fELF"


def test_every_source_and_kernel_is_listed():
    on_disk = {p.stem for p in kernels.kernel_dir().glob("*.cu")}
    assert on_disk == set(kernels.MODULES)
    for module, names in kernels.MODULES.items():
        defined = set(GLOBAL_KERNEL.findall(kernels.read_source(module)))
        fetched = {name.split("<")[0] for name in names}
        assert defined == fetched, f"{module}.cu defines {defined}, the loader lists {fetched}"


def test_unknown_module_or_kernel_is_a_clear_error():
    with pytest.raises(KeyError, match="expected one of"):
        kernels.read_source("conv")
    with pytest.raises(KeyError, match="not a kernel of module 'optim'"):
        kernels.check_kernel("optim", "lamb_update")


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
