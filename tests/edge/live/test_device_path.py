"""The worker's device path: spans of ring planes copied straight onto a torch device, windows cut there.

On the CPU the same code runs with torch CPU tensors (``DeviceSpans`` on device ``cpu``): the bytes,
times and gaps must equal the host path's; the GPU tests repeat it on CUDA from a page-locked ring.
"""

from __future__ import annotations

import numpy as np
import pytest

from edge.live.ring import Gap, GapCause, Planes, SpikeRing, WriterState
from edge.live.ringsync import SyncMode, helper
from edge.live.worker import Worker, WorkerPolicy
from edge.reconstruction.backends import make_reconstructor
from edge.reconstruction.windows import cut_windows
from firmware_io.contract import Geometry

torch = pytest.importorskip("torch")

from edge.live.upload import DeviceSpans  # noqa: E402

GEOM = Geometry(16, 32)  # 64-byte planes
WINDOW = 16
CUDA = torch.cuda.is_available()
needs_cuda = [pytest.mark.gpu, pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")]
MODES = [SyncMode.LOCK] + ([SyncMode.ATOMIC] if helper() is not None else [])


def planes(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, GEOM.plane_bytes), dtype=np.uint8)


@pytest.mark.parametrize("batch,window,hop", [(1, 16, 4), (3, 16, 4), (5, 7, 3), (4, 5, 9), (8, 200, 40)])
def test_cut_windows_on_tensors_are_the_numpy_windows(batch, window, hop):
    span = np.random.default_rng(batch * window).integers(0, 256, ((batch - 1) * hop + window + 2, 13),
                                                            dtype=np.uint8)
    expected = np.stack([span[i * hop: i * hop + window] for i in range(batch)])
    host = cut_windows(span, batch, window, hop)
    assert not host.flags.writeable and np.shares_memory(host, span)
    np.testing.assert_array_equal(host, expected)
    tensor = torch.from_numpy(span)
    cut = cut_windows(tensor, batch, window, hop)
    assert cut.data_ptr() == tensor.data_ptr()  # a view: nothing copied
    np.testing.assert_array_equal(cut.numpy(), expected)
    np.testing.assert_array_equal(cut.contiguous().numpy(), host)
    tail = torch.from_numpy(span)[2:]  # a span that starts inside its storage
    np.testing.assert_array_equal(cut_windows(tail, batch, window, hop).numpy(), cut_windows(span[2:], batch, window, hop))


def test_cut_windows_refuses_a_short_span():
    with pytest.raises(ValueError, match=r"need a span of \(13, plane_bytes\) planes, got shape \(12, 4\)"):
        cut_windows(np.zeros((12, 4), np.uint8), 3, 5, 4)
    with pytest.raises(ValueError, match="must be >= 1, got 0, 5, 4"):
        cut_windows(torch.zeros((12, 4), dtype=torch.uint8), 0, 5, 4)


@pytest.mark.parametrize("mode", MODES)
def test_device_spans_read_the_same_planes_times_and_gaps_as_the_host_reader(mode):
    data = planes(100)
    with SpikeRing.create(32, GEOM, sync=mode) as ring:
        ring.write(0, data[:30], 111)
        ring.write(30, data[30:50], 222)  # wraps: slots 30, 31, then 0..17
        spans = DeviceSpans(Worker(ring, make_reconstructor("tfp", GEOM, window_planes=WINDOW), hop_planes=4).reader,
                            "cpu")
        for start, stop in [(20, 50), (18, 19), (30, 30), (40, 50)]:
            host = spans.reader.read(start, stop)
            host_planes, host_t = host.planes.copy(), host.t_ns.copy()
            got = spans.read(start, stop)
            assert isinstance(got, Planes) and got.first_plane == start
            np.testing.assert_array_equal(got.planes.numpy(), host_planes)
            np.testing.assert_array_equal(got.planes.numpy(), data[start:stop])
            np.testing.assert_array_equal(got.t_ns, host_t)
        assert spans.read(10, 20) == spans.reader.read(10, 20) == Gap(10, 18, 8, GapCause.OVERRUN)  # lapped
        ring.write(60, data[60:62], 333)  # planes 50..59 never delivered
        assert spans.read(48, 62) == spans.reader.read(48, 62)
        assert isinstance(spans.read(48, 62), Gap) and spans.read(48, 62).cause is GapCause.SOURCE_GAP


class TfpOnTensors:
    """TFP that takes its windows as torch tensors on a device (the interface of ``GpuReconstructor``)."""

    def __init__(self, device: str) -> None:
        self._tfp = make_reconstructor("tfp", GEOM, window_planes=WINDOW)
        self.method, self.geometry = self._tfp.method, GEOM
        self.window_planes, self.weights_id, self.backend = WINDOW, "none", f"tfp-on-{device}"
        self.window_device = torch.device(device)
        self.windows_seen: list[tuple[int, ...]] = []

    def reconstruct(self, packed_windows: np.ndarray) -> np.ndarray:
        raise AssertionError("the worker must hand this reconstructor device windows")

    def reconstruct_device(self, windows) -> np.ndarray:
        assert isinstance(windows, torch.Tensor) and windows.device == self.window_device
        self.windows_seen.append(tuple(windows.shape))
        return self._tfp.reconstruct(windows.cpu().numpy())

    def warm_up(self, batch_sizes) -> None:
        pass


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=needs_cuda)])
def test_worker_device_path_gives_the_host_paths_frames(device):
    data = planes(400, seed=3)
    results = []
    for rec in (make_reconstructor("tfp", GEOM, window_planes=WINDOW), TfpOnTensors(device)):
        with SpikeRing.create(128, GEOM) as ring:
            if device == "cuda":
                assert ring.register_cuda() is not None
            worker = Worker(ring, rec, hop_planes=5, policy=WorkerPolicy.ALL, max_batch=6)
            frames = []
            for first in range(0, 400, 50):
                ring.write(first, data[first:first + 50], first)
                while batch := worker.step():
                    frames.extend(batch)
            ring.set("state", int(WriterState.ENDED))
            while (batch := worker.step()) is not None:
                frames.extend(batch)
            results.append(frames)
    host, dev = results
    assert len(host) == len(dev) == (400 - WINDOW) // 5 + 1
    for a, b in zip(host, dev):
        assert (a.key_plane, a.plane_start, a.capture_t_ns) == (b.key_plane, b.plane_start, b.capture_t_ns)
        np.testing.assert_array_equal(a.image, b.image)
    assert max(shape[0] for shape in rec.windows_seen) > 1  # batches of overlapping windows were cut on the device


def test_register_cuda_without_a_gpu_leaves_the_ring_pageable():
    if CUDA:
        pytest.skip("this machine has a GPU")
    with SpikeRing.create(8, GEOM) as ring:
        assert ring.register_cuda() is None


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
def test_a_failed_registration_clears_the_cuda_error(caplog):
    from edge.live.ring import cuda_host_register

    with SpikeRing.create(64, GEOM) as ring:
        assert ring.register_cuda() == "torch.cuda.cudart().cudaHostRegister"
        ptr, nbytes = int(ring.data.ctypes.data), int(ring.data.nbytes)
        assert cuda_host_register(ptr, nbytes) is None  # already registered: cudaErrorHostMemoryAlreadyRegistered
        assert "cleared (cudaGetLastError returned" in caplog.text
        x = torch.arange(1000, device="cuda", dtype=torch.float32)
        assert float((x * 2).sum()) == 999000.0  # the next kernel launch does not inherit the error
        spans = DeviceSpans(Worker(ring, make_reconstructor("tfp", GEOM, window_planes=WINDOW), hop_planes=4).reader,
                            "cuda")
        data = planes(40, seed=9)
        ring.write(0, data, 5)
        got = spans.read(3, 40)
        assert got.planes.device.type == "cuda"
        np.testing.assert_array_equal(got.planes.cpu().numpy(), data[3:40])
