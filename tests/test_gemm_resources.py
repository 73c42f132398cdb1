"""ptxas's resource report for every kernel of kernels/gemm.cu (NVRTC, no GPU needed): no
register spills, static shared memory within the 48 KB a block gets without opting in, and
registers low enough for the two resident blocks per SM the launcher's plan assumes."""
import re

import pytest

from gpunet.ops.launchers import gemm

REGISTERS_PER_SM = 65536
OPTIONS = ("-ftz=true", "--device-as-default-execution-space", "--ptxas-options=-v")


def resources(arch):
    """{kernel name expression: {"registers", "shared" (bytes), "spilled" (bytes stored)}}
    from ptxas -v."""
    try:
        from cupy_backends.cuda.libs import nvrtc

        nvrtc.getVersion()
    except Exception as exc:  # no CuPy, or CuPy without a loadable libnvrtc
        pytest.skip(f"NVRTC cannot load here ({type(exc).__name__}: {exc})")
    source = gemm.SOURCE
    prog = nvrtc.createProgram(source.read(), "gemm.cu", [], [])
    try:
        for expression in source.kernels:
            nvrtc.addNameExpression(prog, expression)
        nvrtc.compileProgram(prog, [f"--gpu-architecture={arch}", *source.options, *OPTIONS])
        names = {nvrtc.getLoweredName(prog, e): e for e in source.kernels}
        log = nvrtc.getProgramLog(prog)
    finally:
        nvrtc.destroyProgram(prog)
    found, current = {}, None
    for line in log.splitlines():
        entry = re.search(r"(?:Compiling entry function|Function properties for) '?(\w+)", line)
        if entry:
            current = found.setdefault(names[entry.group(1)], {"shared": 0})
        for key, pattern in (("spilled", r"(\d+) bytes spill stores"),
                             ("registers", r"Used (\d+) registers"),
                             ("shared", r"(\d+) bytes smem")):
            value = re.search(pattern, line)
            if value:
                current[key] = int(value.group(1))
    return found


@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_no_spills_and_two_blocks_fit_an_sm(arch):
    found = resources(arch)
    assert set(found) == set(gemm.SOURCE.kernels), set(gemm.SOURCE.kernels) - set(found)
    for tiles in gemm.CONFIGS:
        for variant in gemm.VARIANTS:
            use = found[gemm.name(tiles, *variant)]
            assert use["spilled"] == 0, (gemm.name(tiles, *variant), use)
            assert use["shared"] == tiles.shared_bytes <= 48 * 1024, use
            assert 2 * tiles.threads * use["registers"] <= REGISTERS_PER_SM, (tiles, use)
    for epilogue in gemm.EPILOGUES:
        assert found[gemm.reduce_name(*epilogue)]["spilled"] == 0
