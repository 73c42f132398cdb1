"""The CuPy stand-in itself (``tests/cupy_standin``): it refuses what CuPy 14.2 and CUDA
refuse under stream capture, replays graphs from device memory, keeps host and device apart,
names what it lacks, and is ``cupy`` only inside ``standin.installed()``."""
import sys

import numpy as np
import pytest

import gpunet as gn
import standin


@pytest.fixture
def cp():
    with standin.installed() as module:
        yield module


@pytest.fixture
def stream(cp):
    """A non-blocking stream, current during the test (capture it after allocating)."""
    stream = cp.cuda.Stream(non_blocking=True)
    with stream:
        yield stream


def test_it_is_cupy_only_inside_the_switch():
    before = sys.modules.get("cupy")
    with standin.installed() as module:
        assert sys.modules["cupy"] is module and module.STANDIN
        assert type(module.zeros(1)).__module__ == "cupy"
        assert gn.get_backend("auto").name == "gpu"
    assert sys.modules.get("cupy") is before
    assert gn.get_backend("auto").xp is not module  # probed afresh: this machine's answer
    with standin.installed(present=False):
        assert not gn.gpu_status()[0] and gn.get_backend("auto").name == "cpu"


def test_host_and_device_stay_apart(cp):
    a = cp.arange(4, dtype=np.float32)
    with pytest.raises(TypeError, match="Implicit conversion to a NumPy array"):
        np.asarray(a)
    with pytest.raises(TypeError, match="Unsupported type <class 'numpy.ndarray'>"):
        a + np.ones(4, np.float32)
    with pytest.raises(ValueError, match="non-scalar numpy.ndarray cannot be used for fill"):
        a[...] = np.ones(4, np.float32)
    assert isinstance(np.exp(a), cp.ndarray)  # NumPy's ufuncs dispatch to the device
    assert isinstance(a[2], cp.ndarray) and a[2].shape == ()  # never a host scalar
    assert cp.asnumpy(a * 2).tolist() == [0, 2, 4, 6]


def test_a_missing_name_fails_naming_it(cp):
    with pytest.raises(AttributeError, match="the CuPy stand-in has no cupy.fft"):
        cp.fft
    with pytest.raises(AttributeError, match="has no cupy.cuda.cufft"):
        cp.cuda.cufft
    with pytest.raises(AttributeError, match="has no cupy.cuda.MemoryPointer.memset_async"):
        cp.zeros(1).data.memset_async


def test_views_share_memory_and_pointers_are_aligned(cp):
    a = cp.zeros((6, 4), np.float32)
    assert a.data.ptr % 512 == 0 and a.flags.c_contiguous and a.flags.owndata
    assert a[1:].data.ptr == a.data.ptr + 16 and not a.T.flags.c_contiguous
    a[1:, ::2] = 3
    assert float(a.sum()) == 30
    assert a.reshape(4, 6).base is a and a.T.reshape(-1).flags.owndata  # a copy


def test_capture_records_and_the_replay_reads_device_memory_then(cp, stream):
    x, y = cp.ones(3, np.float32), cp.zeros(3, np.float32)
    stream.begin_capture()
    cp.multiply(x, 2, out=y)  # the scalar 2 is part of the graph
    y += x
    graph = stream.end_capture()
    assert y.get().tolist() == [0, 0, 0]  # recorded, not run
    x.fill(5)
    graph.launch(stream)
    assert y.get().tolist() == [15, 15, 15]


@pytest.mark.parametrize("sync", ["get", "float", "int", "bool", "asnumpy", "asarray"])
def test_host_transfers_inside_a_capture_raise_as_cupy_raises(cp, stream, sync):
    x = cp.ones(1, np.float32)
    stream.begin_capture()
    calls = {"get": x.get, "float": lambda: float(x), "int": lambda: int(x),
             "bool": lambda: bool(x), "asnumpy": lambda: cp.asnumpy(x),
             "asarray": lambda: cp.asarray(np.ones(2))}
    with pytest.raises(RuntimeError, match="the current stream is capturing, so (D2H|H2D) "
                                           "transfers are disallowed"):
        calls[sync]()
    stream.end_capture()  # CuPy refused before CUDA saw it: the capture is still valid


@pytest.mark.parametrize("call", ["stream", "device"])
def test_synchronising_inside_a_capture_invalidates_it(cp, stream, call):
    stream.begin_capture()
    with pytest.raises(cp.cuda.runtime.CUDARuntimeError,
                       match="cudaErrorStreamCaptureUnsupported"):
        stream.synchronize() if call == "stream" else cp.cuda.Device().synchronize()
    with pytest.raises(cp.cuda.runtime.CUDARuntimeError,
                       match="cudaErrorStreamCaptureInvalidated"):
        stream.end_capture()


def test_allocation_inside_a_capture_raises_unless_relaxed(cp, stream):
    x = cp.ones(3, np.float32)
    stream.begin_capture()
    with pytest.raises(RuntimeError, match="allocation of 12 bytes .* inside a stream capture"):
        x * 2
    with cp._memory.relaxed_capture():
        doubled = x * 2
    stream.end_capture().launch()
    assert doubled.get().tolist() == [2, 2, 2]


def test_cublas_is_refused_under_capture_as_cupy_refuses_it(cp):
    a, out = cp.ones((2, 3), np.float32), cp.empty((2, 2), np.float32)
    ints, int_out, one = cp.ones((2, 3), np.int64), cp.empty((2, 2), np.int64), \
        cp.empty((1, 1), np.float32)
    stream = cp.cuda.Stream(non_blocking=True)
    with stream:
        stream.begin_capture()
        with pytest.raises(NotImplementedError, match="calling cuBLAS API during stream "
                                                      "capture"):
            cp.matmul(a, a.T, out=out)
        cp.matmul(ints, ints.T, out=int_out)  # integers: a CuPy kernel, no cuBLAS
        cp.matmul(a[:1], a[:1].T, out=one)    # a 1 x 1 product: a reduction kernel
        stream.end_capture().launch()
    assert int_out.get().tolist() == [[3, 3], [3, 3]] and float(one[0, 0]) == 3


def test_the_legacy_stream_and_a_blocking_capture(cp):
    with pytest.raises(RuntimeError, match="cannot capture on the default"):
        cp.cuda.Stream.null.begin_capture()
    blocking = cp.cuda.Stream()
    x = cp.ones(2, np.float32)
    blocking.begin_capture()
    with pytest.raises(cp.cuda.runtime.CUDARuntimeError, match="StreamCaptureImplicit"):
        x.fill(3)  # on the legacy stream, which would wait for the capturing one
    with pytest.raises(cp.cuda.runtime.CUDARuntimeError, match="Invalidated"):
        blocking.end_capture()


def test_a_kernel_launch_is_recorded_with_its_scalars_frozen(cp, stream):
    if standin.unusable():
        pytest.skip(standin.unusable())
    from gpunet.ops.launchers import optim
    param, grad = cp.ones(5, np.float32), cp.ones(5, np.float32)
    lr = cp.full(1, 0.5, np.float32)
    stream.begin_capture()
    optim.sgd_update(param, grad, None, lr, momentum=0.0, weight_decay=0.25, nesterov=False)
    graph = stream.end_capture()
    assert param.get().tolist() == [1] * 5
    lr.fill(0.25)  # read at replay; the decay 0.25 was frozen at the recording
    graph.launch()
    assert np.allclose(param.get(), 1 - 0.25 * (1 + 0.25 * 1))
    with pytest.raises(TypeError, match="Only numpy.ndarrays of size one"):
        optim.SOURCE.function("sgd_update")((1,), (1,), (np.ones(5),))


def test_events_time_a_fake_clock_and_graphs_are_cheaper_than_their_launches(cp):
    stream = cp.cuda.Stream(non_blocking=True)
    x = cp.zeros(4, np.float32)
    with stream:
        start = stream.record()
        for _ in range(10):
            x += 1
        middle = stream.record()
        stream.begin_capture()
        for _ in range(10):
            x += 1
        graph = stream.end_capture()
        graph.launch(stream)
        end = stream.record()
    eager = cp.cuda.get_elapsed_time(start, middle)
    replay = cp.cuda.get_elapsed_time(middle, end)
    assert eager == pytest.approx(0.05) and 0 < replay < eager
    assert float(x[0]) == 20


def test_device_random_and_memory(cp):
    device = cp.cuda.Device()
    assert device.attributes["MultiProcessorCount"] == 132
    assert device.compute_capability == "90" and cp.cuda.runtime.getDeviceCount() == 1
    rs = cp.random.RandomState(3)
    first = rs.permutation(10)
    assert first.dtype == np.int64 and sorted(first.tolist()) == list(range(10))
    assert cp.random.RandomState(3).permutation(10).tolist() == first.tolist()
    assert rs.random_sample((2, 3)).dtype == np.float64
    pool = cp.get_default_memory_pool()
    pool.set_limit(size=1024)
    try:
        with pytest.raises(cp.cuda.memory.OutOfMemoryError, match="limit set to: 1,024"):
            cp.empty(4096, np.uint8)
    finally:
        pool.set_limit(size=0)


def test_curand_is_refused_under_capture(cp, stream):
    stream.begin_capture()
    with cp._memory.relaxed_capture(), \
            pytest.raises(NotImplementedError, match="cuRAND API during stream capture"):
        cp.random.RandomState(0).permutation(4)


def test_a_device_to_device_copy_runs_eagerly_or_is_recorded(cp, stream):
    """``MemoryPointer.copy_from_device_async`` (the device check's bandwidth probe)."""
    src, dst = cp.arange(6, dtype=np.float32), cp.zeros(6, np.float32)
    dst.data.copy_from_device_async(src[2:].data, 8)
    assert dst.get().tolist() == [2, 3, 0, 0, 0, 0]
    stream.begin_capture()
    dst[4:].data.copy_from_device_async(src.data, 8, stream)
    graph = stream.end_capture()
    src.fill(7)
    assert dst.get().tolist() == [2, 3, 0, 0, 0, 0]  # recorded, not run
    graph.launch(stream)
    assert dst.get().tolist() == [2, 3, 0, 0, 7, 7]
    with pytest.raises(cp.cuda.runtime.CUDARuntimeError, match="cudaErrorInvalidValue"):
        dst[4:].data.copy_from_device_async(src.data, 12)


def test_nvrtcs_version_is_the_cuda_the_stand_in_models(cp):
    assert cp.cuda.nvrtc.getVersion() == (13, 0)
    assert cp.cuda.runtime.runtimeGetVersion() == 13000
