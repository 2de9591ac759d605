"""The source registry (``edge.live.sources``): every kind has a class that declares its options as data, the
generic check that rejects another source's options on the command line, and what the capture loop asks of a
source instead of its kind (recoverable errors, the schedule it reports running behind against)."""

from __future__ import annotations

import dataclasses
import inspect

import numpy as np
import pytest
from click.testing import CliRunner

from edge.cli import main as edge_main
from edge.live.options import Option
from edge.live.sources import SOURCES, SourceConfig, SourceKind, kind_of, option_help, selectors, source_from_options, source_options
from edge.live.sources.base import Schedule
from edge.live.sources.camera import CameraConfig, link_name, mode_name
from edge.live.sources.replay import ReplayConfig
from edge.live.sources.simulate import SIMULATE_DEFAULT_RATE_HZ, SimulateConfig
from firmware_io.contract import SpikeBlock
from firmware_io.scenes import SceneName
from firmware_io.layouts import Layout
from firmware_io.spikelink import InitParamsLayout, LinkType, SensorMode


def cli_args(option: Option) -> list[str]:
    """``option`` on a command line with a valid value (a flag, a bare optional value, or a value)."""
    if option.type is bool or option.flag_value is not None:
        return [option.flag]
    if option.choices:
        return [option.flag, option.choices[0]]
    return [option.flag, {int: "1", float: "1"}.get(option.type, "x.dat")]


def test_every_kind_has_a_source_class():
    assert set(SOURCES) == set(SourceKind)
    for kind, cls in SOURCES.items():
        assert issubclass(cls, SourceConfig) and dataclasses.is_dataclass(cls), cls
        assert cls.__dataclass_params__.frozen, f"{cls.__name__} must be frozen"
        assert not inspect.isabstract(cls), f"{cls.__name__} leaves {cls.__abstractmethods__} unimplemented"
        assert cls.SELECTOR.flag == f"--{kind.value}", "the selector is spelled after the kind"
    assert [s.name for s in selectors()] == [kind.value for kind in SOURCES]


def test_each_source_builds_from_exactly_the_options_it_declares():
    for cls in SOURCES.values():
        keywords = [name for name, p in inspect.signature(cls.from_options).parameters.items()
                    if p.kind is inspect.Parameter.KEYWORD_ONLY]
        assert sorted(keywords) == sorted(o.name for o in cls.OPTIONS), cls.__name__
        assert set(cls.NOTES) <= {o.name for o in cls.OPTIONS}, f"{cls.__name__} notes an option it does not take"


def test_shared_options_are_one_object_and_their_help_gathers_every_note():
    names = [o.name for o in source_options()]
    assert len(names) == len(set(names))
    rate = next(o for o in source_options() if o.name == "rate_hz")
    assert sum(rate in cls.OPTIONS for cls in SOURCES.values()) == len(SOURCES)
    text = option_help(rate)
    for cls in SOURCES.values():
        assert cls.NOTES["rate_hz"] in text
    assert f"simulate {SIMULATE_DEFAULT_RATE_HZ:.0f} (default)" in text


def test_kind_of_and_describe_name_each_kind():
    sources = {SourceKind.REPLAY: ReplayConfig(path="x.dat"), SourceKind.SIMULATE: SimulateConfig(),
               SourceKind.CAMERA: CameraConfig()}
    for kind, source in sources.items():
        assert kind_of(source) is kind
        described = source.describe()
        assert all(isinstance(v, (str, int, float, bool)) for v in described.values()), described
        assert described["rate_hz"] == source.rate_hz and described["block_planes"] == source.block_planes


@pytest.mark.parametrize("chosen, option", [
    (kind, option) for kind, cls in SOURCES.items() for option in source_options() if option not in cls.OPTIONS])
def test_an_option_of_another_source_is_a_usage_error_naming_both(chosen, option):
    takers = [SOURCES[k].SELECTOR.flag for k in SOURCES if option in SOURCES[k].OPTIONS]
    result = CliRunner().invoke(edge_main, ["run", *cli_args(SOURCES[chosen].SELECTOR), *cli_args(option)])
    assert result.exit_code == 2, result.output
    assert f"{option.flag} applies to {' or '.join(takers)}, not --{chosen.value}" in result.output, result.output


def test_the_same_check_without_the_command_line():
    with pytest.raises(ValueError, match="--camera-file applies to --camera, not --simulate"):
        source_from_options({"simulate": SceneName.PAN, "camera_file": "x.dat"}, given={"camera_file"})
    with pytest.raises(ValueError, match="exactly one source.*got --replay, --camera"):
        source_from_options({"replay": "x.dat", "camera": True})
    with pytest.raises(ValueError, match=r"--replay FILE, --camera or --simulate \[SCENE\] \(got none\)"):
        source_from_options({})
    # an option left at its default is not "given": it does not count against another source
    source = source_from_options({"simulate": SceneName.PAN, "camera_buffer_pool": 16})
    assert isinstance(source, SimulateConfig) and source.scene is SceneName.PAN


def test_sources_fill_their_own_defaults():
    replay = source_from_options({"replay": "x.dat"})
    simulate = source_from_options({"simulate": SceneName.SHAPES})
    camera = source_from_options({"camera": True, "camera_mode": SensorMode.M1000x1000_20K})
    assert replay.rate_hz == 40_000.0 and (replay.height, replay.width) == (250, 400) and not replay.live
    assert simulate.rate_hz == SIMULATE_DEFAULT_RATE_HZ and simulate.live
    assert camera.rate_hz == 20_000.0 and camera.camera_link is LinkType.PCIE and camera.live
    assert camera.geometry().shape == (1000, 1000)
    dummy = source_from_options({"camera": True, "camera_file": "c.dat", "rate_hz": 4000.0})
    assert dummy.camera_link is LinkType.DUMMY_FILE and dummy.rate_hz == 4000.0  # the file implies the link
    assert dummy.describe()["camera_link"] == link_name(LinkType.DUMMY_FILE) == "dummy-file"
    assert dummy.describe()["camera_mode"] == mode_name(SensorMode.M400x250_40K) == "400x250-40k"


def test_camera_options_map_onto_the_librarys_init_parameters():
    """Link, mode, device, channels, cusum, pool, layout and init layout, as the command line gives them."""
    camera = source_from_options({"camera": True, "camera_mode": SensorMode.M1000x1000_40K, "camera_device": "pcie0",
                                  "camera_channels": 2, "camera_cusum": 25, "camera_buffer_pool": 500,
                                  "camera_init_params": InitParamsLayout.HEADER})
    assert camera.layout is Layout.PCIE1K and camera.block_planes == 25  # the 1000x1000 modes deliver PCIe rows
    described = camera.describe()
    assert described["camera_layout"] == "pcie1k" and described["camera_device"] == "pcie0"
    assert described["camera_cusum"] == described["block_planes"] == 25 and described["camera_buffer_pool"] == 500
    assert described["camera_channels"] == 2 and described["camera_init_params"] == "header"
    assert source_from_options({"camera": True}).layout is Layout.DAT  # 400x250: the .dat convention
    result = CliRunner().invoke(edge_main, ["run", "--camera", "--camera-link", "usb"])
    assert result.exit_code == 2 and "init structure of the USB link" in result.output, result.output
    result = CliRunner().invoke(edge_main, ["run", "--camera", "--block-planes", "40"])
    assert result.exit_code == 2 and "--block-planes applies to --replay or --simulate, not --camera" in result.output


def test_camera_checks_its_own_combinations():
    with pytest.raises(ValueError, match="--rate-hz 1000 disagrees with --camera-mode 400x250-40k"):
        CameraConfig(rate_hz=1000.0)
    with pytest.raises(ValueError, match="give --camera-file"):
        CameraConfig(camera_link=LinkType.DUMMY_FILE)
    with pytest.raises(ValueError, match="not --camera-link usb"):
        CameraConfig(camera_link=LinkType.USB, camera_file="x.dat")
    with pytest.raises(ValueError, match=r"--camera-link usb: the init structure of the USB link \(type 0x21\) is not "
                                         r"published .* will not guess it"):
        CameraConfig(camera_link=LinkType.USB)
    with pytest.raises(ValueError, match="--camera-layout pcie1k does not fit --camera-mode 400x250-40k"):
        CameraConfig(camera_layout=Layout.PCIE1K)
    with pytest.raises(ValueError, match="--camera-cusum 20000 makes 2560000000-byte frames .* int32"):
        CameraConfig(camera_mode=SensorMode.M1000x1000_20K, camera_cusum=20_000)
    with pytest.raises(ValueError, match="--camera-device names a PCIe device"):
        CameraConfig(camera_link=LinkType.DUMMY_FILE, camera_file="x.dat", camera_device="pcie0")
    with pytest.raises(ValueError, match="--loop applies to the dummy-file link"):
        CameraConfig(loop=True)
    with pytest.raises(ValueError, match=r"--height 64 / --width - disagree with --camera-mode"):
        source_from_options({"camera": True, "height": 64}, given={"height"})


def test_what_the_capture_loop_asks_of_a_source():
    assert CameraConfig.recoverable_errors  # the camera reconnects by itself
    assert not ReplayConfig.recoverable_errors and not SimulateConfig.recoverable_errors
    assert ReplayConfig(path="x.dat").schedule() is None and CameraConfig().schedule() is None
    assert isinstance(SimulateConfig().schedule(), Schedule)


def block(first: int, n: int, t_ns: int) -> SpikeBlock:
    return SpikeBlock(first, np.zeros((n, 4), dtype=np.uint8), t_ns)


def test_schedule_measures_how_far_behind_a_paced_source_runs():
    schedule = Schedule(1000.0, "the simulated camera")  # plane p is due at t0 + p ms
    assert schedule.behind_ns(block(0, 40, 1_000_000_000)) == 0  # the first block sets t0 (= 0.96 s)
    assert schedule.behind_ns(block(40, 40, 1_040_000_000)) == 0  # on time
    late = block(80, 40, 1_040_000_000 + 2_540_000_000)  # due at 1.08 s, delivered at 3.58 s
    assert schedule.behind_ns(late) == 2_500_000_000
    message = schedule.behind_message(late, 2_500_000_000)
    assert message.startswith("the simulated camera is 2.5 s behind its 1000 Hz schedule"), message
