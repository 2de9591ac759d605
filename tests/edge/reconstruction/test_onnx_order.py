"""ONNX Runtime's CUDA request is checked before the network is exported (an export takes 20-60 s)."""

from __future__ import annotations

import pytest

from edge.reconstruction.backends.base import BackendUnavailable, Device
from firmware_io.contract import Geometry

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("torch")


def test_cuda_without_the_cuda_provider_fails_before_any_export(monkeypatch):
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this ONNX Runtime has the CUDA provider")
    from edge.reconstruction.backends import onnx_backend
    from edge.reconstruction.networks import load_network

    exports: list[object] = []
    real_export = onnx_backend.export_onnx

    def counted_export(*args, **kwargs):
        exports.append(args)
        return real_export(*args, **kwargs)

    monkeypatch.setattr(onnx_backend, "export_onnx", counted_export)
    loaded = load_network("lrn", None, allow_random=True)
    with pytest.raises(BackendUnavailable, match=r"no CUDA provider \(it has .*CPUExecutionProvider.*onnxruntime-gpu"):
        onnx_backend.build(loaded, Geometry(8, 16), Device.CUDA)
    assert exports == []  # the exporter was never called
    rec = onnx_backend.build(loaded, Geometry(8, 16), Device.CPU)  # the same call on the CPU does export
    assert len(exports) == 1 and rec.backend == "onnxruntime-CPUExecutionProvider"
