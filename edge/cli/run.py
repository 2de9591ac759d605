"""``spike-edge run`` (the live daemon) and ``spike-edge bench pipeline``.

Options can come from a TOML file (``--config FILE.toml``) whose keys are the option names
(``ring-planes = 8000`` or ``ring_planes = 8000``); options given on the command line win.
Exit codes are ``edge.live.daemon.ExitCode``: 0 clean, 2 bad arguments or input, 3 source failure,
4 backend unavailable, 5 cannot bind, 1 unexpected.

Sources and their geometry and rate:

- ``--replay FILE``: ``--height``/``--width`` (default 250x400) for ``.dat``; ``--rate-hz``
  (default 40 kHz) is the recorded rate, used for pacing with ``--realtime``.
- ``--camera``: ``--camera-mode`` fixes geometry and rate; ``--height``/``--width``/``--rate-hz``
  may be left out, and if given must agree with the mode (else a usage error). The library is
  ``--camera-library``, else ``$SPIKELINK_LIBRARY``; a missing one exits with code 3.
  ``--camera-file FILE`` replays a ``.dat`` through the SDK's dummy-file link (implied by
  ``--camera-file``; ``--loop`` loops it); there ``--rate-hz`` is the replay rate (default: the
  mode's).
- ``--simulate [SCENE]``: ``--rate-hz`` defaults to 2 kHz, not 40 kHz. The simulator makes roughly
  5-10k planes/s at 250x400 on one core, so a simulated 40 kHz camera could not keep up. It never
  skips planes (the stream is the same on every machine): at a rate it cannot sustain it runs
  behind its schedule, and ``stats`` shows it (``source_late_blocks``, ``source_behind_ms``, plus a
  warning in the log). The pipeline after it is live as usual: ring ``overwrite`` and worker
  ``latest``, with their own drop counters.

Options that do not apply to the chosen source (``--camera-*`` without ``--camera``, ``--planes``
without ``--simulate``, ``--loop`` with a real camera link, ...) are usage errors, not ignored.
"""

from __future__ import annotations

import logging
import sys

import click

from edge.reconstruction.backends.base import BackendName, Device
from edge.live.capture import DEFAULT_CAMERA_BUFFER_POOL, DEFAULT_CAMERA_MODE, LINK_NAMES, MODE_NAMES, SIMULATE_DEFAULT_RATE_HZ, mode_name
from edge.reconstruction.methods import METHOD_NAMES
from edge.live.worker import DEFAULT_HOP_PLANES, POLICY_NAMES

try:
    from firmware_io.scenes import SceneName

    SCENE_NAMES = [s.value for s in SceneName]
except ImportError:  # pragma: no cover - the simulator is part of the package
    SCENE_NAMES = ["shapes"]


def _load_config(ctx: click.Context, param: click.Parameter, value):
    if value is None:
        return None
    try:
        import tomllib
    except ImportError:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    try:
        with open(value, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise click.BadParameter(f"cannot read {value}: {exc}", ctx, param) from None
    except tomllib.TOMLDecodeError as exc:
        raise click.BadParameter(f"{value} is not valid TOML: {exc}", ctx, param) from None
    names = {p.name for p in ctx.command.params if p.name != "config"}
    config = {}
    for key, item in data.items():
        name = key.replace("-", "_")
        if name not in names:
            valid = ", ".join(sorted(n.replace("_", "-") for n in names))
            raise click.BadParameter(f"unknown key {key!r} in {value}; valid keys: {valid}", ctx, param)
        config[name] = item
    ctx.default_map = {**(ctx.default_map or {}), **config}
    return value


def _run_options(f):
    options = [
        click.option("--config", type=click.Path(dir_okay=False), is_eager=True, expose_value=False,
                     callback=_load_config, help="TOML file of options (keys = option names); the command line wins."),
        click.option("--replay", type=click.Path(dir_okay=False), help="Replay a recording (.dat / .npz)."),
        click.option("--camera", is_flag=True, help="Read the SpikeLink camera (needs the vendor library)."),
        click.option("--simulate", is_flag=False, flag_value="shapes", default=None, type=click.Choice(SCENE_NAMES),
                     help="Simulated camera on a built-in scene (default shapes); its --rate-hz defaults to "
                          f"{SIMULATE_DEFAULT_RATE_HZ:.0f} Hz, which it sustains at 250x400 on one core. At a rate "
                          "it cannot sustain it skips nothing and runs behind (source_late_blocks, "
                          "source_behind_ms in stats)."),
        click.option("--method", type=click.Choice(METHOD_NAMES), default="tfp", show_default=True),
        click.option("--backend", type=click.Choice([b.value for b in BackendName]), default="auto", show_default=True),
        click.option("--device", type=click.Choice(["auto"] + [d.value for d in Device]), default="auto",
                     show_default=True, help="auto: CUDA for networks when available."),
        click.option("--checkpoint", type=click.Path(dir_okay=False), help="Network weights (lrn/stir)."),
        click.option("--window", type=int, help="Window planes (classical methods; networks are fixed)."),
        click.option("--hop", type=int, default=DEFAULT_HOP_PLANES, show_default=True,
                     help="Planes between frames (40 = 1,000 frames/s at 40 kHz)."),
        click.option("--policy", type=click.Choice(POLICY_NAMES),
                     help="Worker policy; default all for --replay, latest for --camera/--simulate/--realtime."),
        click.option("--realtime", is_flag=True, help="Pace the replay at --rate-hz x --speed (live mode)."),
        click.option("--rate-hz", type=float,
                     help="Plane rate of the source: replay 40000 (default); simulate "
                          f"{SIMULATE_DEFAULT_RATE_HZ:.0f} (default); camera: the mode's rate (must agree), "
                          "or the dummy file's replay rate."),
        click.option("--speed", type=float, default=1.0, show_default=True, help="Real-time replay speed factor."),
        click.option("--loop", is_flag=True, help="Loop the replay or the camera's dummy file (plane indices keep increasing)."),
        click.option("--planes", type=int, help="Simulated stream length in planes (default endless)."),
        click.option("--height", type=int, help="Plane height (.dat / simulate; default 250). Camera: set by the mode."),
        click.option("--width", type=int, help="Plane width (.dat / simulate; default 400). Camera: set by the mode."),
        click.option("--with-head", is_flag=True, help="The .dat has 16 extra head columns."),
        click.option("--block-planes", type=int, default=40, show_default=True, help="Planes per capture block."),
        click.option("--ring-planes", type=int, default=4000, show_default=True, help="Ring capacity in planes (bounded memory)."),
        click.option("--dtype", type=click.Choice(["float32", "float16"]), default="float32", show_default=True),
        click.option("--bind", default="tcp://127.0.0.1:5555", show_default=True, help="PUB (XPUB) address."),
        click.option("--control", default="tcp://127.0.0.1:5556", show_default=True, help="REP control address."),
        click.option("--wait-subscribers", type=int, default=0, show_default=True,
                     help="Start streaming once N frame subscribers are connected."),
        click.option("--camera-library", type=click.Path(dir_okay=False),
                     help="Path of the SpikeLink library (else $SPIKELINK_LIBRARY)."),
        click.option("--camera-link", type=click.Choice(list(LINK_NAMES)),
                     help="Camera link (default pcie; dummy-file with --camera-file)."),
        click.option("--camera-mode", type=click.Choice(list(MODE_NAMES)), default=mode_name(DEFAULT_CAMERA_MODE),
                     show_default=True, help="Sensor mode, width x height and rate; sets geometry and rate."),
        click.option("--camera-file", type=click.Path(dir_okay=False),
                     help="A .dat of the mode's geometry replayed by the dummy-file link."),
        click.option("--camera-buffer-pool", type=int, default=DEFAULT_CAMERA_BUFFER_POOL, show_default=True,
                     help="SDK frame buffers (each holds --block-planes planes)."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


@click.command("run")
@_run_options
@click.pass_context
def run(ctx, replay, camera, simulate, method, backend, device, checkpoint, window, hop, policy, realtime,
        rate_hz, speed, loop, planes, height, width, with_head, block_planes, ring_planes, dtype, bind, control,
        wait_subscribers, camera_library, camera_link, camera_mode, camera_file, camera_buffer_pool) -> None:
    """Run the live pipeline: capture -> ring -> reconstruction -> ZeroMQ frames.

    Exit codes: 0 clean end or signal, 2 bad arguments/input, 3 source failure
    (including a missing camera library), 4 backend unavailable, 5 cannot bind an address.
    """
    from edge.live.daemon import Daemon, DaemonConfig

    spec = _source_spec(ctx, replay=replay, camera=camera, simulate=simulate, realtime=realtime,
                        rate_hz=rate_hz, speed=speed, loop=loop, planes=planes, height=height, width=width,
                        with_head=with_head, block_planes=block_planes, camera_library=camera_library,
                        camera_link=camera_link, camera_mode=camera_mode, camera_file=camera_file,
                        camera_buffer_pool=camera_buffer_pool)
    for name, value, low in (("--hop", hop, 1), ("--ring-planes", ring_planes, 2),
                             ("--wait-subscribers", wait_subscribers, 0)):
        if value < low:
            raise click.BadParameter(f"must be >= {low}, got {value}", param_hint=name)
    config = DaemonConfig(source=spec, method=method, backend=backend, device=device, checkpoint=checkpoint,
                          window=window, hop=hop, policy=policy, ring_planes=ring_planes, dtype=dtype, bind=bind,
                          control=control, wait_subscribers=wait_subscribers)
    edge_log = logging.getLogger("edge")
    if edge_log.getEffectiveLevel() > logging.INFO:
        edge_log.setLevel(logging.INFO)  # the run summary is always shown
    daemon = Daemon(config)
    daemon.install_signal_handlers()
    code = daemon.run()
    sys.exit(int(code))


def _given(ctx: click.Context, name: str) -> bool:
    """The option was set by the user (command line, environment or --config), not left at its default."""
    source = ctx.get_parameter_source(name)
    return source is not None and source is not click.core.ParameterSource.DEFAULT


def _source_spec(ctx: click.Context, *, replay, camera, simulate, realtime, rate_hz, speed, loop, planes, height,
                 width, with_head, block_planes, camera_library, camera_link, camera_mode, camera_file,
                 camera_buffer_pool):
    """The ``SourceSpec`` the options describe; options that do not fit the source are usage errors."""
    from edge.live.capture import SourceKind, SourceSpec
    from firmware_io.contract import DEFAULT_GEOMETRY, DEFAULT_RATE_HZ
    from firmware_io.spikelink import LinkType

    chosen = [name for name, on in (("--replay", replay), ("--camera", camera), ("--simulate", simulate)) if on]
    if len(chosen) != 1:
        raise click.UsageError(f"choose exactly one source: --replay FILE, --camera or --simulate [SCENE] "
                               f"(got {', '.join(chosen) or 'none'})")
    source = chosen[0]
    only = {  # option -> the sources it applies to
        "camera_library": ("--camera",), "camera_link": ("--camera",), "camera_mode": ("--camera",),
        "camera_file": ("--camera",), "camera_buffer_pool": ("--camera",), "realtime": ("--replay",),
        "speed": ("--replay",), "with_head": ("--replay",), "planes": ("--simulate",),
        "loop": ("--replay", "--camera"),
    }
    for name, sources in only.items():
        if source not in sources and _given(ctx, name):
            option = "--" + name.replace("_", "-")
            raise click.UsageError(f"{option} applies to {' or '.join(sources)}, not {source}")
    for name, value, low in (("--block-planes", block_planes, 1), ("--height", height, 1), ("--width", width, 1),
                             ("--camera-buffer-pool", camera_buffer_pool, 1), ("--planes", planes, 0)):
        if value is not None and value < low:
            raise click.BadParameter(f"must be >= {low}, got {value}", param_hint=name)
    for name, value in (("--rate-hz", rate_hz), ("--speed", speed)):
        if value is not None and not value > 0:
            raise click.BadParameter(f"must be positive, got {value}", param_hint=name)

    if source == "--replay":
        return SourceSpec(kind=SourceKind.REPLAY, path=replay, block_planes=block_planes, realtime=realtime,
                          rate_hz=rate_hz or DEFAULT_RATE_HZ, speed=speed, loop=loop, with_head=with_head,
                          height=height or DEFAULT_GEOMETRY.height, width=width or DEFAULT_GEOMETRY.width)
    if source == "--simulate":
        return SourceSpec(kind=SourceKind.SIMULATE, scene=simulate, block_planes=block_planes, planes=planes,
                          rate_hz=rate_hz or SIMULATE_DEFAULT_RATE_HZ, height=height or DEFAULT_GEOMETRY.height,
                          width=width or DEFAULT_GEOMETRY.width)

    mode = MODE_NAMES[camera_mode]
    if camera_link is None:
        link = LinkType.DUMMY_FILE if camera_file is not None else LinkType.PCIE
    else:
        link = LINK_NAMES[camera_link]
    dummy = link is LinkType.DUMMY_FILE
    if dummy and camera_file is None:
        raise click.UsageError("--camera-link dummy-file replays a file: give --camera-file FILE.dat")
    if not dummy and camera_file is not None:
        raise click.UsageError(f"--camera-file is replayed by the dummy-file link, not --camera-link {camera_link}")
    if loop and not dummy:
        raise click.UsageError(f"--loop applies to the dummy-file link (--camera-file), not {camera_link or 'pcie'}")
    geometry = mode.geometry
    if (height is not None and height != geometry.height) or (width is not None and width != geometry.width):
        raise click.UsageError(
            f"--height {height if height is not None else '-'} / --width {width if width is not None else '-'} "
            f"disagree with --camera-mode {camera_mode} ({geometry.height}x{geometry.width} HxW); leave them "
            f"out, the mode sets the geometry")
    if rate_hz is not None and not dummy and rate_hz != mode.rate_hz:
        raise click.UsageError(f"--rate-hz {rate_hz:g} disagrees with --camera-mode {camera_mode} "
                               f"({mode.rate_hz:.0f} Hz); leave it out, the mode sets the rate")
    return SourceSpec(kind=SourceKind.CAMERA, block_planes=block_planes, rate_hz=rate_hz or mode.rate_hz, loop=loop,
                      height=geometry.height, width=geometry.width, camera_library=camera_library, camera_link=link,
                      camera_mode=mode, camera_file=camera_file, camera_buffer_pool=camera_buffer_pool)
