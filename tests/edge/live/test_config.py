"""The daemon's typed configuration (``edge.live.config``): each setting's one parse function, and every way
a value enters going through it: the command line, a TOML ``--config`` file, the control socket's ``set``."""

from __future__ import annotations

import math

import pytest
from click.testing import CliRunner

from edge.cli import main as edge_main
from edge.live.config import (
    DEFAULT_RING_PLANES,
    OPTIONS,
    DaemonConfig,
    DeviceSetting,
    parse_backend,
    parse_device,
    parse_dtype,
    parse_endpoint,
    parse_hop,
    parse_method,
    parse_policy,
    parse_precision,
    parse_ring_planes,
    parse_wait_subscribers,
    parse_window,
)
from edge.live.sources.base import parse_block_planes, parse_height, parse_rate_hz
from edge.live.sources.camera import (
    parse_camera_buffer_pool,
    parse_camera_channels,
    parse_camera_cusum,
    parse_camera_device,
    parse_camera_init_params,
    parse_camera_layout,
    parse_camera_link,
    parse_camera_mode,
)
from edge.live.sources.replay import ReplayConfig, parse_layout, parse_speed
from edge.live.sources.simulate import SimulateConfig, parse_planes, parse_scene
from edge.live.worker import DEFAULT_HOP_PLANES, WorkerPolicy
from edge.protocol.client import request as control_request
from edge.protocol.wire import PAYLOAD_DTYPES, PayloadDtype
from edge.reconstruction.backends.base import BackendName, Device
from edge.reconstruction.methods import Method
from edge.reconstruction.models import PrecisionSetting
from firmware_io.scenes import SceneName
from firmware_io.layouts import Layout
from firmware_io.spikelink import InitParamsLayout, LinkType, SensorMode


@pytest.mark.parametrize("parse, value, expected", [
    (parse_hop, 40, 40), (parse_hop, "80", 80), (parse_hop, 1, 1),
    (parse_window, None, None), (parse_window, "41", 41),
    (parse_ring_planes, 2, 2), (parse_wait_subscribers, "0", 0),
    (parse_method, "lrn", Method.LRN), (parse_method, Method.TFI, Method.TFI),
    (parse_backend, "onnx", BackendName.ONNX), (parse_device, "auto", DeviceSetting.AUTO),
    (parse_device, "cuda", DeviceSetting.CUDA), (parse_policy, "latest", WorkerPolicy.LATEST),
    (parse_precision, "bf16", PrecisionSetting.BF16), (parse_precision, "auto", PrecisionSetting.AUTO),
    (parse_dtype, "float16", PayloadDtype.FLOAT16), (parse_endpoint, "tcp://127.0.0.1:1", "tcp://127.0.0.1:1"),
    (parse_rate_hz, "2000", 2000.0), (parse_rate_hz, 40_000, 40_000.0), (parse_speed, 0.5, 0.5),
    (parse_height, "64", 64), (parse_block_planes, 1, 1), (parse_planes, 0, 0),
    (parse_scene, "pan", SceneName.PAN), (parse_camera_link, "dummy-file", LinkType.DUMMY_FILE),
    (parse_camera_mode, "1000x1000-20k", SensorMode.M1000x1000_20K), (parse_camera_buffer_pool, "16", 16),
    (parse_camera_link, "usb", LinkType.USB), (parse_camera_cusum, "50", 50), (parse_camera_channels, 3, 3),
    (parse_camera_device, "pcie0", "pcie0"), (parse_camera_layout, "pcie1k", Layout.PCIE1K),
    (parse_camera_init_params, "header", InitParamsLayout.HEADER), (parse_layout, "dat", Layout.DAT),
])
def test_parse_converts_good_values(parse, value, expected):
    got = parse(value)
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize("parse, value", [
    (parse_hop, 0), (parse_hop, -3), (parse_hop, "fast"), (parse_hop, True), (parse_hop, 2.5), (parse_hop, None),
    (parse_window, 0), (parse_window, "wide"), (parse_ring_planes, 1), (parse_wait_subscribers, -1),
    (parse_method, "nope"), (parse_backend, "cuda"), (parse_device, "tpu"), (parse_policy, "sometimes"),
    (parse_precision, "bfloat16"),
    (parse_dtype, "uint8"), (parse_dtype, "float64"), (parse_endpoint, ""), (parse_endpoint, 5555),
    (parse_rate_hz, 0), (parse_rate_hz, "-1"), (parse_rate_hz, math.nan), (parse_rate_hz, "inf"),
    (parse_speed, 0.0), (parse_height, 0), (parse_block_planes, "0"), (parse_planes, -1),
    (parse_scene, "nope"), (parse_camera_link, "serial"), (parse_camera_mode, "640x480-40k"),
    (parse_camera_buffer_pool, 0), (parse_camera_mode, "unknown"), (parse_camera_cusum, 0),
    (parse_camera_channels, 4), (parse_camera_device, ""), (parse_camera_layout, "pcie"),
    (parse_camera_init_params, "new"), (parse_layout, "raw"),
])
def test_parse_rejects_bad_values_quoting_them(parse, value):
    with pytest.raises(ValueError) as error:
        parse(value)
    assert repr(value) in str(error.value), str(error.value)


def test_the_published_dtypes_are_wire_dtypes():
    choices = next(o for o in OPTIONS if o.name == "dtype").choices
    assert choices == ("float32", "float16") and set(choices) <= set(PAYLOAD_DTYPES)


def test_daemon_states_are_the_documented_strings():
    from edge.live.daemon import DaemonState

    assert [s.value for s in DaemonState] == ["starting", "running", "degraded", "ended", "failed", "stopping"]


def test_device_setting_is_auto_or_a_device():
    assert [d.value for d in DeviceSetting] == ["auto", *(d.value for d in Device)]


def test_from_options_builds_a_typed_config_with_the_defaults():
    config = DaemonConfig.from_options({"replay": "x.dat", "hop": 80, "policy": WorkerPolicy.LATEST})
    assert config.source == ReplayConfig(path="x.dat")
    assert config.hop == 80 and config.policy is WorkerPolicy.LATEST and config.effective_policy is WorkerPolicy.LATEST
    assert config.method is Method.TFP and config.backend is BackendName.AUTO and config.device is DeviceSetting.AUTO
    assert config.dtype is PayloadDtype.FLOAT32 and config.ring_planes == DEFAULT_RING_PLANES and config.window is None
    assert config.precision is None  # the backend's default (fp32 on the CPU, fp16 on CUDA)
    assert {o.name for o in OPTIONS} <= {f for f in DaemonConfig.__dataclass_fields__}
    # policy None: all for a deterministic replay (lossless end to end), latest for a live source
    replay = DaemonConfig.from_options({"replay": "x.dat"})
    assert replay.effective_policy is WorkerPolicy.ALL and replay.deterministic and replay.hop == DEFAULT_HOP_PLANES
    live = DaemonConfig.from_options({"simulate": SceneName.SHAPES})
    assert isinstance(live.source, SimulateConfig) and live.effective_policy is WorkerPolicy.LATEST
    assert not live.deterministic
    with pytest.raises(ValueError, match="unknown options \\['colour'\\]"):
        DaemonConfig.from_options({"replay": "x.dat", "colour": "red"})


# -- the command line and a TOML file: the same parse functions ------------------------------------------
def run_cli(*args: str):
    return CliRunner().invoke(edge_main, ["run", *args])


def test_command_line_values_go_through_the_parse_functions():
    for args, message in ((["--hop", "0"], "hop must be >= 1, got '0'"),
                          (["--window", "0"], "window must be >= 1, got '0'"),
                          (["--ring-planes", "1"], "ring_planes must be >= 2, got '1'"),
                          (["--rate-hz", "nan"], "rate_hz must be a finite number, got 'nan'"),
                          (["--dtype", "uint8"], "'uint8' is not one of 'float32', 'float16'")):
        result = run_cli("--simulate", *args)
        assert result.exit_code == 2 and message in result.output, result.output
        assert f"Invalid value for '{args[0]}'" in result.output, result.output


def test_an_engine_directory_replaces_the_weights():
    config = DaemonConfig.from_options({"replay": "x.dat", "method": Method.LRN, "engine": "engines/lrn"})
    assert config.engine == "engines/lrn" and config.checkpoint is None
    result = run_cli("--simulate", "--method", "lrn", "--checkpoint", "w.pt", "--engine", "engines/lrn")
    assert result.exit_code == 2 and "give --checkpoint or --engine, not both" in result.output, result.output


@pytest.mark.parametrize("line, key, message", [
    ('hop = 0', "hop", "hop must be >= 1, got 0"),
    ('hop = "fast"', "hop", "hop must be an integer, got 'fast'"),
    ('ring_planes = 1', "ring_planes", "ring_planes must be >= 2, got 1"),
    ('rate-hz = -5.0', "rate-hz", "rate_hz must be > 0, got -5.0"),
    ('policy = "sometimes"', "policy", "'sometimes' is not one of 'latest', 'all'"),
    ('camera-buffer-pool = 0', "camera-buffer-pool", "camera_buffer_pool must be >= 1, got 0"),
])
def test_a_bad_value_in_a_toml_file_is_a_usage_error_naming_the_key(tmp_path, line, key, message):
    path = tmp_path / "run.toml"
    path.write_text(f'simulate = "shapes"\n{line}\n')
    result = run_cli("--config", str(path))
    assert result.exit_code == 2, result.output
    assert message in result.output and f"(key {key!r} in {path})" in result.output, result.output


def test_toml_options_of_another_source_are_usage_errors_too(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('simulate = "shapes"\ncamera-file = "x.dat"\n')
    result = run_cli("--config", str(path))
    assert result.exit_code == 2 and "--camera-file applies to --camera, not --simulate" in result.output


def test_a_toml_file_configures_the_daemon_and_the_command_line_wins(tmp_path, start_daemon):
    path = tmp_path / "run.toml"
    path.write_text('simulate = "pan"\nheight = 32\nwidth = 48\nrate-hz = 4000\nhop = 80\nring_planes = 1000\n'
                    'dtype = "float16"\n')
    d = start_daemon(["--config", str(path), "--hop", "100"])
    described = d.request("describe", timeout_s=20.0)
    assert described["source"]["kind"] == "simulate" and described["source"]["scene"] == "pan"
    assert described["geometry"] == [32, 48] and described["rate_hz"] == 4000.0  # TOML's integer is a rate
    assert described["hop"] == 100, "the command line wins over the file"
    assert described["ring_planes"] == 1000 and described["dtype"] == "float16"
    d.terminate(within_s=1.0)


# -- the control socket's set: the same parse functions, and a rejected request changes nothing ----------
def test_set_goes_through_the_same_parse_functions(start_daemon):
    d = start_daemon(["--simulate", "--height", "32", "--width", "48", "--hop", "40"])
    assert d.request("describe", timeout_s=20.0)["hop"] == 40
    for params, parse in (({"hop": 0}, parse_hop), ({"hop": "fast"}, parse_hop), ({"policy": "sometimes"}, parse_policy),
                          ({"method": "nope"}, parse_method), ({"window": -1}, parse_window)):
        [(key, value)] = params.items()
        with pytest.raises(ValueError) as expected:
            parse(value)
        reply = control_request(d.ctl, {"cmd": "set", "params": {**params, "hop": params.get("hop", 80)}},
                                timeout_s=3.0)
        assert reply["ok"] is False and reply["error"] == str(expected.value), reply
        assert repr(value) in reply["error"]
    described = d.request("describe")
    assert described["hop"] == 40 and described["policy"] == "latest" and described["method"] == "tfp", \
        "a rejected set changes nothing (not even its good values)"
    reply = d.request("set", hop=80, policy="all")
    assert reply["applied"]["hop"] == 80 and reply["applied"]["policy"] == "all"
    assert d.request("describe")["hop"] == 80
    health = d.request("health")
    assert health["state"] in ("starting", "running")
    d.terminate(within_s=1.0)
