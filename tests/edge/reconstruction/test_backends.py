"""Network backends behind the Reconstructor interface, export to engine directories, manifests."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the networks need torch (pip install 'spike-edge[torch]')")

from edge.reconstruction.backends import (
    BackendName,
    BackendUnavailable,
    Device,
    available_backends,
    build_backend,
    export_engine,
    load_engine_dir,
    make_reconstructor,
)
from edge.reconstruction.backends.registry import backend_entry
from edge.reconstruction.engines import EngineMismatch, read_manifest
from edge.reconstruction.inputs import voxelise
from edge.reconstruction.models.checkpoints import CheckpointError
from edge.reconstruction.models.stir import STIR
from edge.reconstruction.networks import load_network
from firmware_io.bitpack import pack_planes
from firmware_io.contract import Geometry
from firmware_io.dat import DatReader

TOL = 1e-4
CPU_BACKENDS = [b for b in available_backends(Device.CPU) if not backend_entry(b).needs_engine]


@pytest.fixture(scope="module")
def random_stir(tmp_path_factory):
    torch.manual_seed(2)
    path = tmp_path_factory.mktemp("w") / "stir_random.pth"
    torch.save({f"module.{k}": v for k, v in STIR(61).state_dict().items()}, path)  # official layout
    return path


def random_windows(window, geometry, batch=1, seed=0):
    planes = (np.random.default_rng(seed).random((batch * window, *geometry.shape)) < 0.25).astype(np.uint8)
    return pack_planes(planes).reshape(batch, window, geometry.plane_bytes), planes.reshape(batch, window, *geometry.shape)


def eager(net, planes: np.ndarray, lrn: bool) -> np.ndarray:
    x = torch.from_numpy(planes)
    with torch.inference_mode():
        x = voxelise(x) if lrn else x.float()
        return net.eval()(x)[:, 0].numpy()


@pytest.mark.parametrize("backend", CPU_BACKENDS, ids=lambda b: b.value)
def test_lrn_backends_agree_on_redsbase(backend, lrn_checkpoint, redsbase_clips):
    from fixtures_catalogue import REDSBASE_SHAPE

    geometry = Geometry(*REDSBASE_SHAPE)
    rec = make_reconstructor("lrn", geometry, backend=backend, checkpoint=lrn_checkpoint)
    reference = load_network("lrn", lrn_checkpoint).model
    assert rec.window_planes == 200 and len(rec.weights_id) == 12
    for dat, _ in redsbase_clips:
        with DatReader(dat) as reader:
            packed = np.ascontiguousarray(reader.packed(50, 250))
            planes = reader.unpacked(50, 250)
        out = rec.reconstruct(packed)
        assert out.shape == (1, *REDSBASE_SHAPE) and out.dtype == np.float32
        np.testing.assert_allclose(out[0], eager(reference, planes[None], True)[0], atol=TOL, rtol=0)


def test_auto_backend_names_what_runs(random_lrn):
    rec = make_reconstructor("lrn", Geometry(16, 24), checkpoint=random_lrn)
    assert rec.backend in ("onnxruntime-CPUExecutionProvider", "torch-cpu-fp32")


def test_batch_and_stir_torch_backend(random_stir):
    geometry = Geometry(19, 37)
    loaded = load_network("stir", random_stir)
    rec = build_backend(loaded, geometry, BackendName.TORCH, Device.CPU)
    packed, planes = random_windows(61, geometry, batch=2)
    out = rec.reconstruct(packed)
    assert out.shape == (2, 19, 37)
    np.testing.assert_allclose(out, eager(load_network("stir", random_stir).model, planes, False), atol=TOL, rtol=0)


def test_network_without_weights_needs_checkpoint(tmp_path, monkeypatch):
    from edge.reconstruction import networks

    monkeypatch.setattr(networks, "WEIGHTS_DIR", tmp_path)
    with pytest.raises(CheckpointError, match="--checkpoint"):
        make_reconstructor("stir", Geometry(32, 32))


def test_tensorrt_needs_an_engine(random_lrn):
    with pytest.raises(BackendUnavailable, match="--engine"):
        make_reconstructor("lrn", Geometry(16, 16), backend="tensorrt", checkpoint=random_lrn)


@pytest.mark.parametrize("shape", [(32, 48), (48, 64)])
@pytest.mark.parametrize("model", ["lrn", "stir"])
def test_onnx_export_runs_in_onnxruntime(model, shape, tmp_path, random_lrn, random_stir):
    pytest.importorskip("onnxruntime")
    checkpoint = random_lrn if model == "lrn" else random_stir
    geometry = Geometry(*shape)
    out_dir = export_engine(model, checkpoint, "onnx", geometry, tmp_path / "engine")
    manifest = read_manifest(out_dir)
    assert manifest["opset"] >= 16 and manifest["geometry"] == {"height": shape[0], "width": shape[1]}
    assert manifest["weights_sha256"] and manifest["versions"]["onnxruntime"]
    rec = make_reconstructor(model, geometry, engine=out_dir)
    assert rec.backend.startswith("onnxruntime-")
    window = rec.window_planes
    packed, planes = random_windows(window, geometry, batch=2, seed=3)
    expected = eager(load_network(model, checkpoint).model, planes, model == "lrn")
    np.testing.assert_allclose(rec.reconstruct(packed), expected, atol=TOL, rtol=0)


def test_torchscript_export_roundtrip(tmp_path, random_lrn):
    geometry = Geometry(24, 40)
    out_dir = export_engine("lrn", random_lrn, "torchscript", geometry, tmp_path / "ts")
    rec = load_engine_dir(out_dir, geometry)
    packed, planes = random_windows(200, geometry)
    np.testing.assert_allclose(rec.reconstruct(packed), eager(load_network("lrn", random_lrn).model, planes, True),
                               atol=TOL, rtol=0)


def test_manifest_mismatch_is_refused(tmp_path, random_lrn):
    out_dir = export_engine("lrn", random_lrn, "torchscript", Geometry(24, 40), tmp_path / "ts")
    with pytest.raises(EngineMismatch, match=r"geometry: engine built for 24x40, requested 32x40"):
        load_engine_dir(out_dir, Geometry(32, 40))
    with pytest.raises(EngineMismatch, match="model: engine is lrn, requested stir"):
        load_engine_dir(out_dir, Geometry(24, 40), model="stir")
    with pytest.raises(EngineMismatch, match="torchscript engine runs on the torch backend"):
        load_engine_dir(out_dir, Geometry(24, 40), backend="onnx")
    (out_dir / "model.ts").write_bytes(b"tampered")
    with pytest.raises(EngineMismatch, match="sha256"):
        load_engine_dir(out_dir, Geometry(24, 40))
    manifest = json.loads((out_dir / "manifest.json").read_text())
    manifest["manifest_version"] = 99
    (out_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(EngineMismatch, match="version"):
        load_engine_dir(out_dir, Geometry(24, 40))
    with pytest.raises(FileNotFoundError, match="manifest"):
        load_engine_dir(tmp_path, Geometry(24, 40))


def test_export_refuses_existing_directory(tmp_path, random_lrn):
    (tmp_path / "exists").mkdir()
    with pytest.raises(FileExistsError):
        export_engine("lrn", random_lrn, "torchscript", Geometry(8, 8), tmp_path / "exists")


def test_tensorrt_engine(tmp_path, random_lrn):
    pytest.importorskip("torch_tensorrt")
    if not torch.cuda.is_available():
        pytest.skip("TensorRT needs a CUDA GPU")
    geometry = Geometry(64, 96)
    out_dir = export_engine("lrn", random_lrn, "tensorrt", geometry, tmp_path / "trt", precision="fp16")
    rec = load_engine_dir(out_dir, geometry, device="cuda")
    packed, planes = random_windows(200, geometry)
    np.testing.assert_allclose(rec.reconstruct(packed), eager(load_network("lrn", random_lrn).model, planes, True),
                               atol=2e-2, rtol=2e-2)


@pytest.mark.gpu
@pytest.mark.parametrize("model", ["lrn", "stir"])
def test_cuda_torch_backend_matches_cpu(model, random_lrn, random_stir):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    checkpoint = random_lrn if model == "lrn" else random_stir
    geometry = Geometry(250, 400)
    rec = make_reconstructor(model, geometry, backend="torch", device="cuda", checkpoint=checkpoint)
    assert rec.backend == "torch-cuda-fp16"
    packed, planes = random_windows(rec.window_planes, geometry, batch=2, seed=5)
    expected = eager(load_network(model, checkpoint).model, planes, model == "lrn")
    for _ in range(2):  # capture, then replay
        np.testing.assert_allclose(rec.reconstruct(packed), expected, atol=2e-2 * max(1.0, np.abs(expected).max()))
    from edge.reconstruction.torch_unpack import unpack_planes_torch

    got = unpack_planes_torch(torch.from_numpy(packed).cuda(), geometry).cpu().numpy()
    np.testing.assert_array_equal(got, planes)


# -- bf16 -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["lrn", "stir"])
def test_cpu_bf16_stays_within_a_tenth_of_a_db_of_fp32_on_redsbase(model, lrn_checkpoint, redsbase_clips):
    """The published LRN weights and the packaged STIR weights on the real clips: bf16 on the CPU loses at
    most 0.1 dB against ground truth (what ``--precision auto`` allows), and moves values little."""
    from PIL import Image

    from edge.cli.bench.quality import fitted_psnr, psnr_against
    from edge.reconstruction.windows import default_key, window_range
    from fixtures_catalogue import REDSBASE_SHAPE

    geometry = Geometry(*REDSBASE_SHAPE)
    checkpoint = lrn_checkpoint if model == "lrn" else None
    fp32 = make_reconstructor(model, geometry, backend="torch", checkpoint=checkpoint, precision="fp32")
    bf16 = make_reconstructor(model, geometry, backend="torch", checkpoint=checkpoint, precision="bf16")
    assert bf16.backend == "torch-cpu-bf16"
    for dat, png in redsbase_clips:
        with DatReader(dat) as reader:
            packed = np.ascontiguousarray(reader.packed(*window_range(default_key(len(reader)), fp32.window_planes)))
        truth = np.asarray(Image.open(png).convert("L"), dtype=np.float64) / 255
        reference, got = fp32.reconstruct(packed)[0], bf16.reconstruct(packed)[0]
        assert got.dtype == np.float32 and got.shape == geometry.shape
        assert psnr_against(got, reference) > 45
        assert fitted_psnr(reference, truth) - fitted_psnr(got, truth) <= 0.1


def test_torch_cpu_runs_bf16_and_refuses_fp16(random_lrn):
    geometry = Geometry(16, 24)
    loaded = load_network("lrn", random_lrn)
    rec = build_backend(loaded, geometry, BackendName.TORCH, Device.CPU, precision="bf16")
    packed, planes = random_windows(200, geometry, batch=2)
    expected = eager(load_network("lrn", random_lrn).model, planes, True)
    np.testing.assert_allclose(rec.reconstruct(packed), expected, atol=0.05 * np.abs(expected).max())
    with pytest.raises(ValueError, match="runs fp32, bf16, not fp16"):
        build_backend(load_network("lrn", random_lrn), geometry, BackendName.TORCH, Device.CPU, precision="fp16")


def test_auto_backend_follows_the_precision(random_lrn):
    geometry = Geometry(16, 24)
    assert make_reconstructor("lrn", geometry, checkpoint=random_lrn, precision="bf16").backend == "torch-cpu-bf16"
    if BackendName.ONNX in CPU_BACKENDS:
        with pytest.raises(ValueError, match="ONNX Runtime runs weights in fp32.*not bf16"):
            make_reconstructor("lrn", geometry, backend="onnx", checkpoint=random_lrn, precision="bf16")
        rec = make_reconstructor("lrn", geometry, backend="onnx", checkpoint=random_lrn, precision="auto")
        assert rec.backend.startswith("onnxruntime-")  # auto on a backend that runs fp32 only


def test_bf16_torchscript_artifact_and_refused_formats(tmp_path, random_lrn):
    geometry = Geometry(24, 40)
    out_dir = export_engine("lrn", random_lrn, "torchscript", geometry, tmp_path / "ts", precision="bf16")
    manifest = read_manifest(out_dir)
    assert manifest["precision"] == "bf16" and manifest["input"]["dtype"] == "bfloat16"
    rec = load_engine_dir(out_dir, geometry)
    assert rec.backend == "torchscript-cpu-bf16"
    packed, planes = random_windows(200, geometry)
    expected = eager(load_network("lrn", random_lrn).model, planes, True)
    np.testing.assert_allclose(rec.reconstruct(packed), expected, atol=0.05 * np.abs(expected).max())
    with pytest.raises(EngineMismatch, match="bf16 torchscript artifacts run on cpu, requested device cuda"):
        load_engine_dir(out_dir, geometry, device="cuda")
    with pytest.raises(ValueError, match="is bf16, not fp32"):
        make_reconstructor("lrn", geometry, engine=out_dir, precision="fp32")
    assert make_reconstructor("lrn", geometry, engine=out_dir, precision="auto").backend == "torchscript-cpu-bf16"
    with pytest.raises(ValueError, match="onnx artifacts are fp32, fp16, not bf16"):
        export_engine("lrn", random_lrn, "onnx", geometry, tmp_path / "onnx", precision="bf16")
    with pytest.raises(ValueError, match="tensorrt artifacts are fp32, fp16, not bf16"):
        export_engine("lrn", random_lrn, "tensorrt", geometry, tmp_path / "trt", precision="bf16")
    assert not (tmp_path / "onnx").exists() and not (tmp_path / "trt").exists()


@pytest.mark.gpu
@pytest.mark.parametrize("model", ["lrn", "stir"])
def test_cuda_bf16_torch_backend_matches_cpu(model, random_lrn, random_stir):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    checkpoint = random_lrn if model == "lrn" else random_stir
    geometry = Geometry(250, 400)
    rec = make_reconstructor(model, geometry, backend="torch", device="cuda", checkpoint=checkpoint, precision="bf16")
    assert rec.backend == "torch-cuda-bf16"
    packed, planes = random_windows(rec.window_planes, geometry, batch=2, seed=5)
    expected = eager(load_network(model, checkpoint).model, planes, model == "lrn")
    for _ in range(2):  # capture, then replay
        np.testing.assert_allclose(rec.reconstruct(packed), expected, atol=5e-2 * max(1.0, np.abs(expected).max()))
