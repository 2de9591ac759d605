"""The CUDA paths, checked against the CPU (run on a machine with a GPU: ``pytest -m gpu``; the whole
GPU check is ``scripts/gpu_check.sh``, docs/gpu-check.md).

- the torch backend on CUDA in fp32 agrees with eager CPU fp32 within 1e-4 of the reference's range
  (TF32 off), and in fp16 (the CUDA default) and bf16 reaches a PSNR over 40 dB against it, with finite
  output, on REDS_BASE windows (or simulated ones);
- unpacking on the GPU is bit-exact with ``firmware_io.bitpack.unpack_planes``;
- the CUDA-graph path returns what the same backend returns without graphs (relative error; a graph
  may use other cuDNN algorithms), for several batch sizes and with inputs changing between replays
  (the static input buffer is really refilled); ``warm_up`` captures every batch size ahead, in one
  memory pool; windows handed over on the device (``reconstruct_device``, overlapping views of one
  span) give what the same windows give from the host;
- ``spike-edge bench device --device cuda`` runs and records the GPU.

This module imports nothing of ``edge.cli`` or ``edge.live``: on a GPU machine without pyzmq it
must still be collected and run.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

from edge.reconstruction.backends import BackendName, Device, build_backend  # noqa: E402
from edge.reconstruction.models import Precision  # noqa: E402
from edge.reconstruction.networks import load_network  # noqa: E402
from edge.reconstruction.reference import EagerReconstructor, agreement, agreement_windows, strict_fp32, within  # noqa: E402
from firmware_io.contract import Geometry  # noqa: E402

REDS_GEOMETRY = Geometry(250, 400)
EDGE = [sys.executable, "-m", "edge"]  # not edge.cli.processes: importing edge.cli loads pyzmq, absent there


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
    for out in (got, batched):
        result = agreement(out, expected)
        assert within(result, 1e-4), result


def test_cuda_fp16_psnr_over_40db(network):
    loaded, windows, expected = network
    rec = build_backend(copy.deepcopy(loaded), REDS_GEOMETRY, BackendName.TORCH, Device.CUDA)
    assert rec.backend == "torch-cuda-fp16"
    got = np.concatenate([rec.reconstruct(w[None]) for w in windows])
    assert got.dtype == np.float32 and got.shape == expected.shape
    result = agreement(got, expected)
    assert result["finite"], result
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
    tol = 1e-4 if precision is Precision.FP32 else 1e-2
    for g, p in zip(graph_out, plain_out):
        result = agreement(g, p)
        assert within(result, tol), result
    assert not np.array_equal(graph_out[0], graph_out[2])  # the second replay really saw new input


@pytest.mark.parametrize("model", ["lrn", "stir"])
def test_warm_up_captures_every_batch_size_in_one_pool_and_device_windows_agree(model):
    import torch

    from edge.reconstruction.backends.base import GpuReconstructor
    from edge.reconstruction.windows import cut_windows

    geometry = Geometry(64, 96)
    loaded = load_network(model, None, allow_random=True)
    rec = build_backend(copy.deepcopy(loaded), geometry, BackendName.TORCH, Device.CUDA)
    assert isinstance(rec, GpuReconstructor) and rec.window_device.type == "cuda"
    rec.warm_up(range(1, 5))
    assert sorted(rec._graphs) == [1, 2, 3, 4] and rec._pool is not None
    assert torch.backends.cudnn.benchmark
    n, hop, batch = loaded.window_planes, 7, 4
    span = np.random.default_rng(2).integers(0, 256, ((batch - 1) * hop + n, geometry.plane_bytes), dtype=np.uint8)
    host = rec.reconstruct(np.ascontiguousarray(cut_windows(span, batch, n, hop)))
    device = rec.reconstruct_device(cut_windows(torch.from_numpy(span).cuda(), batch, n, hop))
    assert sorted(rec._graphs) == [1, 2, 3, 4]  # no capture at use: all were warmed up
    result = agreement(device, host)
    assert within(result, 1e-5), result  # the same graph, the same bytes in
    with pytest.raises(ValueError, match="expected packed windows uint8"):
        rec.reconstruct_device(torch.from_numpy(span[None, :n]))  # on the host, not the GPU


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
        agr = rows["torch"]["agreement_vs_fp32"]
        assert agr["finite"] and (agr["identical"] or agr["min_psnr_db"] > 40.0), agr
        assert rows["torch"]["peak_gpu_memory_mib"] > 0
        stages = rows["torch"]["stages_ms"]
        assert stages["method"] == "cuda events" and all(b["network"] > 0 for b in stages["batches"])
    assert gpu["name"] in out.with_suffix(".md").read_text()


def test_onnxruntime_cuda_binds_inputs_prepared_on_the_gpu(network):
    ort = pytest.importorskip("onnxruntime")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip(f"this ONNX Runtime has no CUDA provider ({', '.join(ort.get_available_providers())})")
    loaded, windows, expected = network
    rec = build_backend(copy.deepcopy(loaded), REDS_GEOMETRY, BackendName.ONNX, Device.CUDA)
    assert rec.backend == "onnxruntime-CUDAExecutionProvider-iobinding"
    result = agreement(rec.reconstruct(windows), expected)
    assert within(result, 1e-2), result
