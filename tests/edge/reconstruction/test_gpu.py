"""The CUDA paths, checked against the CPU (run on a machine with a GPU: ``pytest -m gpu tests/test_gpu.py``).

- the torch backend on CUDA in fp32 agrees with eager CPU fp32 within 1e-4 (TF32 off), and in fp16
  (the CUDA default) and bf16 reaches a PSNR over 40 dB against it, on REDS_BASE windows (or simulated ones);
- unpacking on the GPU is bit-exact with ``firmware_io.bitpack.unpack_planes``;
- the CUDA-graph path returns exactly what the same backend returns without graphs, for several batch
  sizes and with inputs changing between replays (the static input buffer is really refilled);
- ``spike-edge bench device --device cuda`` runs and records the GPU.
"""

from __future__ import annotations

import copy
import json
import subprocess

import numpy as np
import pytest

torch = pytest.importorskip("torch")

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

from edge.reconstruction.backends import BackendName, Device, build_backend  # noqa: E402
from edge.cli.bench.device import EagerReconstructor, agreement, agreement_windows, strict_fp32  # noqa: E402
from edge.reconstruction.models import Precision  # noqa: E402
from edge.reconstruction.networks import load_network  # noqa: E402
from edge.cli.processes import EDGE  # noqa: E402
from firmware_io.contract import Geometry  # noqa: E402

REDS_GEOMETRY = Geometry(250, 400)


@pytest.fixture(scope="module", params=["lrn", "stir"])
def network(request):
    """(loaded network, windows at 250x400, CPU eager fp32 output on them)."""
    loaded = load_network(request.param, None, allow_random=True)
    windows, _ = agreement_windows(loaded.window_planes, REDS_GEOMETRY, n=2)
    reference = EagerReconstructor(copy.deepcopy(loaded), REDS_GEOMETRY, Device.CPU)
    expected = np.concatenate([reference.reconstruct(w[None]) for w in windows])
    return loaded, windows, expected


def test_cuda_fp32_matches_cpu(network):
    loaded, windows, expected = network
    with strict_fp32():  # the graph is captured inside: TF32 off in the recorded kernels too
        rec = build_backend(copy.deepcopy(loaded), REDS_GEOMETRY, BackendName.TORCH, Device.CUDA,
                            precision=Precision.FP32)
        assert rec.backend == "torch-cuda-fp32"
        got = np.concatenate([rec.reconstruct(w[None]) for w in windows])
        batched = rec.reconstruct(windows)
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
    np.testing.assert_allclose(batched, expected, atol=1e-4, rtol=0)


def test_cuda_fp16_psnr_over_40db(network):
    loaded, windows, expected = network
    rec = build_backend(copy.deepcopy(loaded), REDS_GEOMETRY, BackendName.TORCH, Device.CUDA)
    assert rec.backend == "torch-cuda-fp16"
    got = np.concatenate([rec.reconstruct(w[None]) for w in windows])
    assert got.dtype == np.float32 and got.shape == expected.shape
    result = agreement(got, expected)
    assert result["identical"] or result["min_psnr_db"] > 40.0, result


def test_cuda_bf16_psnr_over_40db_with_graphs(network):
    loaded, windows, expected = network
    rec = build_backend(copy.deepcopy(loaded), REDS_GEOMETRY, BackendName.TORCH, Device.CUDA,
                        precision=Precision.BF16)
    assert rec.backend == "torch-cuda-bf16" and rec.cuda_graphs
    got = np.concatenate([rec.reconstruct(w[None]) for w in windows])  # capture, then replays
    again = np.concatenate([rec.reconstruct(w[None]) for w in windows])
    assert got.dtype == np.float32 and np.array_equal(got, again)
    result = agreement(got, expected)
    assert result["identical"] or result["min_psnr_db"] > 40.0, result


@pytest.mark.parametrize("shape", [(250, 400), (256, 400), (19, 37), (1, 8), (3, 5)])
def test_gpu_unpacking_is_bit_exact(shape):
    from edge.reconstruction.torch_unpack import unpack_planes_torch
    from firmware_io.bitpack import unpack_planes

    geometry = Geometry(*shape)
    packed = np.random.default_rng(sum(shape)).integers(0, 256, (2, 3, geometry.plane_bytes), dtype=np.uint8)
    expected = unpack_planes(packed.reshape(6, -1), geometry).reshape(2, 3, *shape)
    got = unpack_planes_torch(torch.from_numpy(packed).cuda(), geometry)
    assert got.device.type == "cuda" and got.dtype == torch.uint8
    np.testing.assert_array_equal(got.cpu().numpy(), expected)
    single = unpack_planes_torch(torch.from_numpy(packed[0, 0]).cuda(), geometry, dtype=torch.float16)
    np.testing.assert_array_equal(single.cpu().numpy(), expected[0, 0].astype(np.float16))


@pytest.mark.parametrize("precision", [Precision.FP16, Precision.FP32])
@pytest.mark.parametrize("model", ["lrn", "stir"])
def test_cuda_graph_path_equals_plain_path(model, precision):
    geometry = Geometry(64, 96)
    loaded = load_network(model, None, allow_random=True)
    rec = build_backend(copy.deepcopy(loaded), geometry, BackendName.TORCH, Device.CUDA, precision=precision)
    assert rec.cuda_graphs
    rng = np.random.default_rng(5)
    inputs = [rng.integers(0, 256, (b, loaded.window_planes, geometry.plane_bytes), dtype=np.uint8)
              for b in (1, 3, 1, 3)]  # replays of each captured graph with new data
    graph_out = [rec.reconstruct(x) for x in inputs]
    assert sorted(rec._graphs) == [1, 3]
    rec.cuda_graphs = False
    plain_out = [rec.reconstruct(x) for x in inputs]
    for g, p in zip(graph_out, plain_out):
        np.testing.assert_array_equal(g, p)
    assert not np.array_equal(graph_out[0], graph_out[2])  # the second replay really saw new input


def test_bench_device_cuda_records_the_gpu(tmp_path):
    out = tmp_path / "gpu.json"
    proc = subprocess.run(
        [*EDGE, "bench", "device", "--device", "cuda", "--methods", "lrn,stir", "--seconds", "0.3",
         "--batch-sizes", "1,2", "--height", "64", "--width", "96", "--no-tensorrt", "--out", str(out)],
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    gpu = report["environment"]["gpu"]
    assert gpu["name"] and gpu["compute_capability"] and report["environment"]["torch_cuda"]
    for name in ("lrn", "stir"):
        rows = {c["key"]: c for c in report["methods"][name]["candidates"]}
        assert rows["torch"]["backend"] == "torch-cuda-fp16"
        assert rows["torch"]["latency_ms"]["p50"] > 0 and rows["torch"]["best_frames_per_s"] > 0
        assert rows["torch"]["agreement_vs_fp32"]["min_psnr_db"] is None or \
            rows["torch"]["agreement_vs_fp32"]["min_psnr_db"] > 40.0
    assert gpu["name"] in out.with_suffix(".md").read_text()
