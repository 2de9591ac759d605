"""The two tables are complete and consistent: the method table (every Method, every network's build,
input preparation, input shape, default weights, parameter counts) and the backend registry (every
backend name and artifact format, availability naming the extra to install, what ``auto`` picks)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the networks need torch (pip install 'spike-edge[torch]')")

from edge.reconstruction.backends import (
    BackendName,
    BackendUnavailable,
    Device,
    build_backend,
    load_engine_dir,
    make_reconstructor,
)
from edge.reconstruction.backends.registry import BACKENDS, auto_entry, available_backends, backend_entry, format_entry
from edge.reconstruction.methods import LEARNED_METHOD_NAMES, LEARNED_METHODS, METHOD_NAMES, METHOD_SPECS, Method
from edge.reconstruction.models import ExportFormat
from edge.reconstruction.models.lrn import LRN_PARAMETERS
from edge.reconstruction.models.stir import STIR_PARAMETERS, STIR_VARIANTS
from edge.reconstruction.networks import WEIGHTS_DIR, build_network, load_network
from firmware_io.bitpack import pack_planes
from firmware_io.contract import Geometry


try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[3]
ABSENT = "spike_edge_test_absent_module"
GEOMETRY = Geometry(16, 24)


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def packed_windows(window: int, geometry: Geometry, batch: int = 2, seed: int = 0) -> np.ndarray:
    planes = (np.random.default_rng(seed).random((batch * window, *geometry.shape)) < 0.3).astype(np.uint8)
    return pack_planes(planes).reshape(batch, window, geometry.plane_bytes)


def without(entry, module: str = ABSENT):
    """The same entry, needing one more module, which is not installed."""
    return dataclasses.replace(entry, requires=entry.requires + (module,))


# -- the method table ----------------------------------------------------------------------------


def test_every_method_has_one_entry():
    assert list(METHOD_SPECS) == list(Method) and METHOD_NAMES == [m.value for m in Method]
    for method, spec in METHOD_SPECS.items():
        assert spec.method is method and spec.window_planes > 0 and spec.summary
    assert [m for m, spec in METHOD_SPECS.items() if spec.network is None] == [Method.TFP, Method.TFI]
    assert LEARNED_METHODS == (Method.LRN, Method.STIR) and LEARNED_METHOD_NAMES == ["lrn", "stir"]


@pytest.mark.parametrize("method", LEARNED_METHODS, ids=lambda m: m.value)
def test_network_entry_builds_prepares_and_has_weights(method):
    spec = METHOD_SPECS[method]
    network = spec.network
    net = network.build().eval()
    assert net.window_planes == spec.window_planes  # the table's window is the network's default variant
    packed = packed_windows(spec.window_planes, GEOMETRY)
    host = network.prepare_numpy(packed, GEOMETRY)
    device = network.prepare_torch(torch.from_numpy(packed), GEOMETRY)
    shape = network.input_shape(spec.window_planes, GEOMETRY, batch=2)
    assert host.dtype == np.float32 and host.shape == shape
    assert device.dtype == torch.float32 and tuple(device.shape) == shape
    np.testing.assert_array_equal(device.numpy(), host)  # the host and torch preparations agree exactly
    with torch.inference_mode():
        assert tuple(net(device).shape) == (2, 1, *GEOMETRY.shape)  # the network takes that input
    assert (WEIGHTS_DIR / network.weights_file).is_file()
    loaded = load_network(method, None)  # the packaged default weights load strictly
    assert loaded.weights_path == WEIGHTS_DIR / network.weights_file and len(loaded.weights_id) == 12
    with pytest.raises(ValueError, match="channels"):
        network.input_shape(0, GEOMETRY)


@pytest.mark.parametrize(("method", "window", "parameters"), [
    (Method.LRN, None, 185_889),
    (Method.STIR, 61, 5_107_960),
    (Method.STIR, 41, 5_078_698),
], ids=["lrn", "stir61", "stir41"])
def test_parameter_counts(method, window, parameters):
    net = build_network(method, window_planes=window)
    assert n_params(net) == parameters
    assert net.window_planes == (window or METHOD_SPECS[method].window_planes)
    recorded = LRN_PARAMETERS if method is Method.LRN else STIR_PARAMETERS[window]
    assert recorded == parameters


def test_stir_variant_is_read_off_the_state():
    for window in STIR_VARIANTS:
        state = build_network(Method.STIR, window_planes=window).state_dict()
        assert build_network(Method.STIR, state).window_planes == window


def test_learned_lookups_refuse_classical_methods():
    with pytest.raises(ValueError, match="'tfp' is not a learned method; choose one of lrn, stir"):
        build_network("tfp")
    with pytest.raises(ValueError, match="LRN takes a 200-plane window, not 61"):
        build_network("lrn", window_planes=61)


# -- the backend registry ------------------------------------------------------------------------


def test_every_backend_name_and_format_has_one_entry():
    names = [e.name for e in BACKENDS]
    assert sorted(names) == sorted(set(BackendName) - {BackendName.AUTO}) and len(names) == len(set(names))
    for name in names:
        assert backend_entry(name).name is name
    artifacts = [e.artifact for e in BACKENDS if e.artifact is not None]
    assert sorted(artifacts) == sorted(ExportFormat) and len(artifacts) == len(set(artifacts))
    files = [e.artifact_file for e in BACKENDS if e.artifact is not None]
    assert all(files) and len(files) == len(set(files))
    for fmt in ExportFormat:
        assert format_entry(fmt).artifact is fmt
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for entry in BACKENDS:
        assert entry.devices and set(entry.fp16_devices) <= set(entry.devices)
        assert not entry.needs_engine or entry.artifact is not None  # an engine-only backend loads some format
        if entry.requires:  # what it needs is installed by a declared extra
            assert re.fullmatch(r"spike-edge\[(\w+)\]", entry.extra).group(1) in extras, entry.extra
        else:
            assert entry.extra is None and entry.missing(entry.devices[0]) is None
    assert [e.name for e in BACKENDS if not e.learned] == [BackendName.NUMPY]


def _build(entry, device: Device, checkpoint: Path, lrn_engine):
    if not entry.learned:
        return make_reconstructor("tfp", GEOMETRY, backend=entry.name), 41
    if entry.needs_engine:
        out = lrn_engine(entry.artifact, GEOMETRY, "fp16" if device in entry.fp16_devices else "fp32")
        return load_engine_dir(out, GEOMETRY, backend=entry.name, device=device), 200
    return build_backend(load_network("lrn", checkpoint), GEOMETRY, entry.name, device), 200


@pytest.mark.parametrize("entry", BACKENDS, ids=lambda e: e.name.value)
def test_every_backend_builds_or_names_its_extra(entry, random_lrn, lrn_engine):
    device = Device.CPU if Device.CPU in entry.devices else Device.CUDA
    try:
        rec, window = _build(entry, device, random_lrn, lrn_engine)
    except BackendUnavailable as exc:
        if entry.missing_modules():
            assert entry.extra in str(exc)
        else:  # its libraries are here; the device it needs is not
            assert device is Device.CUDA and not torch.cuda.is_available() and "CUDA" in str(exc)
        return
    assert not entry.missing_modules() and rec.window_planes == window
    out = rec.reconstruct(packed_windows(window, GEOMETRY, batch=1))
    assert out.shape == (1, *GEOMETRY.shape) and out.dtype == np.float32 and np.isfinite(out).all()


@pytest.mark.parametrize("entry", [e for e in BACKENDS if e.requires], ids=lambda e: e.name.value)
def test_a_missing_library_names_the_extra(entry):
    absent = without(entry)
    for device in entry.devices:
        assert absent.missing(device) is not None and absent.name not in available_backends(device, (absent,))
    with pytest.raises(BackendUnavailable, match=re.escape(f"pip install '{entry.extra}'")):
        absent.require(entry.devices[0])


def test_auto_picks_only_available_backends():
    for method in LEARNED_METHODS:
        for device in Device:
            entry = auto_entry(method, device)
            assert entry.name in available_backends(device) and entry.learned and not entry.needs_engine
    onnx_absent = tuple(without(e) if e.name is BackendName.ONNX else e for e in BACKENDS)
    assert auto_entry(Method.LRN, Device.CPU, onnx_absent).name is BackendName.TORCH
    torch_absent = tuple(without(e) if e.name is BackendName.TORCH else e for e in BACKENDS)
    assert auto_entry(Method.STIR, Device.CPU, torch_absent).name is BackendName.ONNX
    nothing = tuple(without(e) for e in BACKENDS)
    with pytest.raises(BackendUnavailable, match=r"spike-edge\[torch\]' or 'spike-edge\[onnx\]"):
        auto_entry(Method.LRN, Device.CPU, nothing)


def test_auto_follows_the_measurements_and_names_what_runs(random_lrn):
    pytest.importorskip("onnxruntime")
    assert auto_entry(Method.LRN, Device.CPU).name is BackendName.ONNX  # 222 ms against 277 ms (torch)
    assert auto_entry(Method.STIR, Device.CPU).name is BackendName.TORCH  # 756 ms against 846 ms (ONNX Runtime)
    assert auto_entry(Method.LRN, Device.CUDA).name is BackendName.TORCH
    rec = make_reconstructor("lrn", GEOMETRY, checkpoint=random_lrn)
    assert rec.backend == "onnxruntime-CPUExecutionProvider"


def test_classical_methods_run_on_numpy_only():
    assert make_reconstructor("tfi", GEOMETRY, window_planes=9).backend == "numpy"
    with pytest.raises(BackendUnavailable, match="tfp runs on the numpy backend only, not torch"):
        make_reconstructor("tfp", GEOMETRY, backend="torch")
    with pytest.raises(BackendUnavailable, match="the networks do not run on the numpy backend"):
        make_reconstructor("lrn", GEOMETRY, backend="numpy")
