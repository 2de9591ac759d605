"""AOTInductor packages (``--format aoti``): the whole forward compiled into ``model.pt2``, loaded through the
registry and by the daemon, compared with the torch backend by relative error, and refused when its
manifest does not fit.

Compiling a package takes tens of seconds on two cores: the LRN package is the session's one
(``lrn_engine``, shared with ``test_registry``); STIR's is compiled once, in a test marked slow."""

from __future__ import annotations

import json
import shutil
import signal
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the networks need torch (pip install 'spike-edge[torch]')")

from click.testing import CliRunner

from edge.reconstruction.backends import (
    BackendName,
    BackendUnavailable,
    Device,
    build_backend,
    export_engine,
    load_engine_dir,
    make_reconstructor,
)
from edge.reconstruction.backends.aoti_backend import MAX_BATCH
from edge.reconstruction.backends.base import GpuReconstructor
from edge.reconstruction.engines import MANIFEST_NAME, EngineMismatch, read_manifest
from edge.reconstruction.networks import load_network
from edge.reconstruction.reference import agreement, strict_fp32, within
from firmware_io.bitpack import pack_planes
from firmware_io.contract import Geometry

GEOMETRY = Geometry(16, 24)  # test_registry's: the session compiles one LRN package for both
REL_TOL = 1e-5  # fp32: the same maths as the torch backend, other kernels


def packed_windows(window: int, geometry: Geometry, batch: int, seed: int = 0) -> np.ndarray:
    planes = (np.random.default_rng(seed).random((batch * window, *geometry.shape)) < 0.3).astype(np.uint8)
    return pack_planes(planes).reshape(batch, window, geometry.plane_bytes)


@pytest.fixture
def tampered(lrn_engine, tmp_path):
    """``tampered(**fields)``: a copy of the session's LRN package whose manifest has ``fields`` replaced."""

    def make(**fields):
        out = shutil.copytree(lrn_engine("aoti", GEOMETRY), tmp_path / f"copy{len(list(tmp_path.iterdir()))}")
        manifest = json.loads((out / MANIFEST_NAME).read_text())
        manifest.update(fields)
        (out / MANIFEST_NAME).write_text(json.dumps(manifest))
        return out

    return make


def test_lrn_package_matches_the_torch_backend(lrn_engine, random_lrn):
    out = lrn_engine("aoti", GEOMETRY)
    manifest = read_manifest(out)
    assert (manifest["format"], manifest["file"], manifest["device"]) == ("aoti", "model.pt2", "cpu")
    assert manifest["cpu_capability"] == torch.backends.cpu.get_cpu_capability() and manifest["gpu"] is None
    assert manifest["versions"]["torch"] == torch.__version__
    assert manifest["input"] == {"name": "packed", "shape": [1, 200, GEOMETRY.plane_bytes], "dtype": "uint8",
                                 "max_batch": MAX_BATCH}
    rec = make_reconstructor("lrn", GEOMETRY, engine=out)  # what `spike-edge reconstruct --engine DIR` does
    assert rec.backend == "aoti-cpu-fp32" and rec.window_planes == 200 and rec.weights_id == manifest["weights_id"]
    reference = build_backend(load_network("lrn", random_lrn), GEOMETRY, BackendName.TORCH, Device.CPU)
    windows = packed_windows(200, GEOMETRY, batch=3)
    expected = reference.reconstruct(windows)
    got = rec.reconstruct(windows)
    assert got.shape == (3, *GEOMETRY.shape) and got.dtype == np.float32
    assert within(agreement(got, expected), REL_TOL)
    assert within(agreement(rec.reconstruct(windows[1]), expected[1:2]), REL_TOL)  # one window, batch 1
    rec.max_batch = 2  # a batch over the package's bound runs in slices
    assert within(agreement(rec.reconstruct(windows), expected), REL_TOL)
    assert isinstance(rec, GpuReconstructor) and rec.window_device is None  # a CPU package takes host windows
    with pytest.raises(ValueError, match="on None"):
        rec.reconstruct_device(torch.from_numpy(windows))


def test_the_daemon_publishes_a_packages_frames(lrn_engine, start_daemon):
    """``spike-edge run --engine DIR`` loads the package through the same checks and publishes its frames."""
    from edge.protocol.client import request

    d = start_daemon(["--simulate", "--rate-hz", "4000", "--hop", "200", "--method", "lrn", "--device", "cpu",
                      "--engine", str(lrn_engine("aoti", GEOMETRY)), "--height", "16", "--width", "24"])
    described = request(d.ctl, {"cmd": "describe"}, timeout_s=60)  # answered once the package is loaded
    assert described["ok"] and described["backend"] == "aoti-cpu-fp32", d.text()
    deadline = time.monotonic() + 30
    while request(d.ctl, {"cmd": "stats"}, timeout_s=5)["stats"]["frames"] < 2:
        assert time.monotonic() < deadline, d.text()
        time.sleep(0.1)
    d.proc.send_signal(signal.SIGTERM)
    assert d.wait(120) == 0, d.text()


def test_packages_are_prebuilt_only(random_lrn):
    with pytest.raises(BackendUnavailable, match="spike-train export --format aoti"):
        make_reconstructor("lrn", GEOMETRY, backend="aoti", checkpoint=random_lrn)


def test_fp16_packages_are_for_cuda(tmp_path):
    """Refused where it enters, before any compiling: the command line and the registry say why."""
    from training.cli import main

    result = CliRunner().invoke(main, ["export", "--model", "lrn", "--format", "aoti", "--height", "16", "--width",
                                       "24", "--precision", "fp16", "--device", "cpu", "--out", str(tmp_path / "x")])
    assert result.exit_code != 0 and "fp16 aoti artifacts are built for cuda, not cpu" in result.output
    assert not (tmp_path / "x").exists()
    if not torch.cuda.is_available():  # the default device for fp16 is CUDA, which is not here
        with pytest.raises(BackendUnavailable, match="needs a CUDA GPU"):
            export_engine("lrn", None, "aoti", GEOMETRY, tmp_path / "y", precision="fp16")
        assert not (tmp_path / "y").exists()


def test_a_package_for_another_torch_or_cpu_is_refused(tampered):
    with pytest.raises(EngineMismatch, match=r"torch: AOTInductor packages run only on the torch that compiled "
                                             r"them; built with 2\.0\.0, installed"):
        load_engine_dir(tampered(versions={"python": "3.11.0", "torch": "2.0.0"}), GEOMETRY)
    with pytest.raises(EngineMismatch, match="cpu capability: package compiled for SVE256, this CPU runs"):
        load_engine_dir(tampered(cpu_capability="SVE256"), GEOMETRY)


def test_a_cuda_package_is_refused_on_the_cpu(tampered):
    out = tampered(device="cuda", cpu_capability=None, gpu={"name": "a GPU", "compute_capability": "1.0"})
    gpu_problem = "compute capability: package 1.0" if torch.cuda.is_available() else "torch sees no CUDA GPU here"
    with pytest.raises(EngineMismatch, match="device: engine compiled for cuda, requested cpu") as refused:
        load_engine_dir(out, GEOMETRY, device="cpu")
    assert gpu_problem in str(refused.value)


def test_other_weights_are_refused(tampered):
    manifest = read_manifest(tampered())
    with pytest.raises(EngineMismatch, match="weights: weights_id .* is not the start of weights_sha256"):
        load_engine_dir(tampered(weights_sha256="0" * 64), GEOMETRY)  # the hash alone edited
    with pytest.raises(EngineMismatch, match=f"weights_id: manifest 000000000000, package {manifest['weights_id']}"):
        load_engine_dir(tampered(weights_sha256="0" * 64, weights_id="0" * 12), GEOMETRY)  # both: the package says
    out = tampered()
    package = bytearray((out / "model.pt2").read_bytes())
    package[len(package) // 2] ^= 0xFF
    (out / "model.pt2").write_bytes(bytes(package))
    with pytest.raises(EngineMismatch, match="model.pt2 does not match the sha256"):
        load_engine_dir(out, GEOMETRY)


@pytest.mark.slow
def test_stir_package_matches_the_torch_backend(tmp_path):
    """STIR's package (packaged weights; 32x48 pads to 32x48 inside the forward) against the torch backend."""
    geometry = Geometry(32, 48)
    out = export_engine("stir", None, "aoti", geometry, tmp_path / "stir")
    rec = load_engine_dir(out, geometry, model="stir")
    reference = build_backend(load_network("stir", None), geometry, BackendName.TORCH, Device.CPU)
    windows = packed_windows(rec.window_planes, geometry, batch=2, seed=4)
    assert rec.backend == "aoti-cpu-fp32" and rec.window_planes == 61
    assert within(agreement(rec.reconstruct(windows), reference.reconstruct(windows)), REL_TOL)


@pytest.mark.gpu
@pytest.mark.parametrize("precision,tolerance", [("fp32", 1e-4), ("fp16", 1e-2)])  # test_gpu's bounds
def test_cuda_package_matches_cpu_fp32(precision, tolerance, random_lrn, tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    geometry = Geometry(64, 96)
    with strict_fp32():  # fp32 means fp32: no TF32 convolutions, compiling or running
        out = export_engine("lrn", random_lrn, "aoti", geometry, tmp_path / "cuda", precision=precision,
                            device="cuda")
        manifest = read_manifest(out)
        assert manifest["device"] == "cuda" and manifest["cpu_capability"] is None
        assert manifest["gpu"]["compute_capability"] == "{}.{}".format(*torch.cuda.get_device_capability())
        rec = load_engine_dir(out, geometry, device="cuda")
        assert rec.backend == f"aoti-cuda-{precision}"
        reference = build_backend(load_network("lrn", random_lrn), geometry, BackendName.TORCH, Device.CPU)
        windows = packed_windows(200, geometry, batch=4, seed=6)
        got = rec.reconstruct(windows)
        assert within(agreement(got, reference.reconstruct(windows)), tolerance)
        rec.warm_up([1, 2])
        on_gpu = torch.from_numpy(windows).cuda()
        assert rec.window_device == on_gpu.device
        assert within(agreement(rec.reconstruct_device(on_gpu), got), 1e-6)  # windows handed over on the GPU
    with pytest.raises(EngineMismatch, match="device: engine compiled for cuda, requested cpu"):
        load_engine_dir(out, geometry, device="cpu")
