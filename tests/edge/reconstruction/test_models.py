"""The networks themselves: sizes, checkpoint layouts, input transforms, padding, torch unpacking."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch", reason="the networks need torch (pip install 'spike-edge[torch]')")

from edge.reconstruction import networks
from edge.reconstruction.inputs import voxelise
from edge.reconstruction.models.checkpoints import CheckpointError, load_strict, read_state_dict, weights_id
from edge.reconstruction.models.lrn import LRN
from edge.reconstruction.models.stir import STIR, nested_tfp, pad_to_multiple, tfp_trims
from edge.reconstruction.networks import load_network
from edge.reconstruction.torch_unpack import unpack_planes_torch
from firmware_io.bitpack import unpack_planes
from firmware_io.contract import Geometry
from firmware_io.dat import DatReader

LRN_KEYS = ["0.0.weight", "0.0.bias", "1.0.weight", "1.0.bias", "2.0.weight", "2.0.bias",
            "3.0.weight", "3.0.bias", "4.weight", "4.bias"]


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_lrn_size_and_keys():
    net = LRN()
    assert n_params(net) == 185_889
    assert list(net.state_dict()) == LRN_KEYS


def test_stir_sizes_and_variants():
    assert n_params(STIR(61)) == 5_107_960
    stir41 = STIR(41)
    assert stir41.variant.substreams == ((0, 15), (13, 28), (26, 41))
    assert stir41.resnet.conv1.in_channels == 15 and stir41.encoder.conv0.net[0].in_channels == 15
    with pytest.raises(ValueError, match="61"):
        STIR(50)


def test_nested_tfp_windows():
    assert tfp_trims(21) == [0, 2, 4, 6, 8]
    assert tfp_trims(15) == [0, 2, 4, 6]
    x = torch.rand(2, 21, 3, 4)
    out = nested_tfp(x)
    assert out.shape == (2, 5, 3, 4)
    torch.testing.assert_close(out[:, 2], x[:, 4:17].mean(1))
    spikes = (x > 0.5).to(torch.bfloat16)
    half = nested_tfp(spikes)  # taken in float32, then rounded once to bf16
    assert half.dtype == torch.bfloat16 and torch.equal(half, nested_tfp(spikes.float()).to(torch.bfloat16))


def test_official_lrn_checkpoint_loads_strictly(lrn_checkpoint):
    loaded = load_network("lrn", lrn_checkpoint)
    assert loaded.weights_id == hashlib.sha256(lrn_checkpoint.read_bytes()).hexdigest()[:12]
    assert loaded.window_planes == 200


def test_mismatch_error_names_keys(lrn_checkpoint):
    state = read_state_dict(lrn_checkpoint)
    state["5.weight"] = state.pop("4.weight")
    state["extra.bias"] = torch.zeros(1)
    with pytest.raises(CheckpointError) as info:
        load_strict(LRN(), state, "bad.pth")
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert "missing keys: 4.weight" in message and "5.weight" in message and "extra.bias" in message


def test_shape_mismatch_is_named():
    state = LRN().state_dict()
    state["4.bias"] = torch.zeros(2)
    with pytest.raises(CheckpointError, match=r"4\.bias \(2,\) \(model \(1,\)\)"):
        load_strict(LRN(), state)


def test_wrappers_and_module_prefix(tmp_path):
    net = STIR(41)
    path = tmp_path / "stir41.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}, "epoch": 3}, path)
    loaded = load_network("stir", path)
    assert loaded.window_planes == 41  # the variant is read off the checkpoint
    path2 = tmp_path / "lrn.pt"
    torch.save({"model": LRN().state_dict()}, path2)
    assert load_network("lrn", path2).weights_id == weights_id(path2)


def test_default_weights_lookup(tmp_path, monkeypatch):
    monkeypatch.setattr(networks, "WEIGHTS_DIR", tmp_path)
    with pytest.raises(CheckpointError, match="--checkpoint"):
        load_network("lrn", None)
    torch.save(LRN().state_dict(), tmp_path / "lrn_default.pt")
    assert networks.has_default_weights("lrn")
    assert load_network("lrn", None).weights_path == tmp_path / "lrn_default.pt"


def test_voxelise_sums_runs_of_four():
    planes = torch.randint(0, 2, (2, 200, 5, 7), dtype=torch.uint8)
    vox = voxelise(planes)
    assert vox.shape == (2, 50, 5, 7) and vox.dtype == torch.float32
    torch.testing.assert_close(vox[:, 3], planes[:, 12:16].sum(1).float())
    assert float(vox.max()) <= 4
    with pytest.raises(ValueError):
        voxelise(planes[:, :199])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
def test_inputs_are_prepared_straight_in_the_compute_dtype(dtype):
    """Packed windows become voxels / planes of the network's dtype with the values of the float32 path
    as it was (a float32 copy of the unpacked window, summed), exactly: counts 0..4 are exact in every dtype."""
    from edge.reconstruction.inputs import planes_torch, voxels_torch

    geometry = Geometry(13, 20)  # width not a multiple of 8: the flat-stream unpacking
    packed = torch.from_numpy(np.random.default_rng(4).integers(0, 256, (2, 200, geometry.plane_bytes), dtype=np.uint8))
    as_float32 = unpack_planes_torch(packed, geometry, torch.float32)
    old_voxels = as_float32.reshape(2, 50, 4, *geometry.shape).sum(dim=2)
    voxels = voxels_torch(packed, geometry, dtype)
    planes = planes_torch(packed, geometry, dtype)
    assert voxels.dtype == dtype and planes.dtype == dtype and tuple(voxels.shape) == (2, 50, 13, 20)
    assert torch.equal(voxels.float(), old_voxels) and torch.equal(planes.float(), as_float32)
    assert int(voxels.max()) == 4 and int(voxels.min()) == 0
    if dtype is torch.float32:  # the default is float32, bit for bit the former result
        assert torch.equal(voxels_torch(packed, geometry), old_voxels)
        assert torch.equal(planes_torch(packed, geometry), as_float32)


def test_voxelise_keeps_float_planes_in_their_dtype_and_casts_counts_once():
    planes = torch.randint(0, 2, (1, 8, 3, 4), dtype=torch.uint8)
    assert voxelise(planes.to(torch.bfloat16)).dtype == torch.bfloat16  # training passes float planes
    assert voxelise(planes.bool(), dtype=torch.float16).dtype == torch.float16
    torch.testing.assert_close(voxelise(planes.bool()), voxelise(planes.float()), rtol=0, atol=0)
    with pytest.raises(ValueError, match="overflow"):
        voxelise(torch.zeros(1, 512, 2, 2, dtype=torch.uint8), planes_per_bin=256)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_stir_warps_in_float32_whatever_the_precision(dtype):
    """bf16 keeps 8 significant bits: a grid coordinate near 1 would be off by pixels; the warp samples in fp32."""
    from edge.reconstruction.models.stir import backward_warp

    generator = torch.Generator().manual_seed(3)
    features = torch.rand(1, 2, 9, 640, generator=generator).to(dtype)
    flow = (torch.rand(1, 2, 9, 640, generator=generator) * 6 - 3).to(dtype)
    got = backward_warp(features, flow)
    assert got.dtype == dtype
    expected = backward_warp(features.float(), flow.float()).to(dtype)  # the same values, warped in fp32
    assert torch.equal(got, expected)


def test_pad_to_multiple_replicates_edges():
    x = torch.arange(3 * 5, dtype=torch.float32).reshape(1, 1, 3, 5)
    padded, h, w = pad_to_multiple(x, 4)
    assert (h, w) == (3, 5) and padded.shape == (1, 1, 4, 8)
    torch.testing.assert_close(padded[..., 3, :5], x[..., 2, :])
    torch.testing.assert_close(padded[..., :3, 7], x[..., :, 4])


@pytest.mark.parametrize("shape", [(17, 29), (32, 48)])
def test_stir_pads_and_crops_odd_sizes(shape):
    torch.manual_seed(0)
    net = STIR(61).eval()
    x = (torch.rand(1, 61, *shape) < 0.3).float()
    with torch.inference_mode():
        y = net(x)
        manual = net(pad_to_multiple(x)[0])[..., : shape[0], : shape[1]]
    assert y.shape == (1, 1, *shape)
    torch.testing.assert_close(y, manual)


@settings(max_examples=40, deadline=None)
@given(height=st.integers(1, 19), width=st.integers(1, 27), n=st.integers(1, 3), seed=st.integers(0, 2**31))
def test_torch_unpack_bit_exact(height, width, n, seed):
    geometry = Geometry(height, width)
    packed = np.random.default_rng(seed).integers(0, 256, (n, geometry.plane_bytes), dtype=np.uint8)
    expected = unpack_planes(packed, geometry)
    got = unpack_planes_torch(torch.from_numpy(packed), geometry)
    assert got.dtype == torch.uint8
    np.testing.assert_array_equal(got.numpy(), expected)


def test_torch_unpack_camera_geometry_batched():
    geometry = Geometry(250, 400)
    packed = np.random.default_rng(1).integers(0, 256, (2, 3, geometry.plane_bytes), dtype=np.uint8)
    got = unpack_planes_torch(torch.from_numpy(packed), geometry, torch.float32)
    expected = unpack_planes(packed.reshape(6, -1), geometry).reshape(2, 3, 250, 400)
    np.testing.assert_array_equal(got.numpy(), expected.astype(np.float32))
    with pytest.raises(ValueError, match="12500"):
        unpack_planes_torch(torch.zeros(3, 7, dtype=torch.uint8), geometry)


def test_lrn_on_redsbase_looks_like_the_scene(lrn_checkpoint, redsbase_clips):
    """Official weights (trained on low-light captures) on the synthetic REDS clips: the image
    correlates with the ground truth; its scale is not the GT's (see the report)."""
    from PIL import Image

    net = load_network("lrn", lrn_checkpoint).model
    for dat, png in redsbase_clips:
        with DatReader(dat) as reader:
            planes = torch.from_numpy(reader.unpacked(50, 250))[None]
        with torch.inference_mode():
            out = net(voxelise(planes))[0, 0].numpy()
        gt = np.asarray(Image.open(png).convert("L"), dtype=np.float64) / 255
        assert out.shape == gt.shape
        assert np.corrcoef(out.ravel(), gt.ravel())[0, 1] > 0.85
