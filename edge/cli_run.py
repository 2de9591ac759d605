"""``spike-edge run`` (the live daemon) and ``spike-edge bench pipeline``.

Options can come from a TOML file (``--config FILE.toml``) whose keys are the option names
(``ring-planes = 8000`` or ``ring_planes = 8000``); options given on the command line win.
Exit codes are ``edge.daemon.ExitCode``: 0 clean, 2 bad arguments or input, 3 source failure,
4 backend unavailable, 5 cannot bind, 1 unexpected.
"""

from __future__ import annotations

import logging
import sys

import click

from edge.backends.base import BackendName, Device
from edge.methods import METHOD_NAMES
from edge.worker import DEFAULT_HOP_PLANES, POLICY_NAMES

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
                     help="Simulated camera on a built-in scene (default shapes)."),
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
        click.option("--rate-hz", type=float, default=40_000.0, show_default=True, help="Plane rate of the source."),
        click.option("--speed", type=float, default=1.0, show_default=True, help="Real-time replay speed factor."),
        click.option("--loop", is_flag=True, help="Loop the replay (plane indices keep increasing)."),
        click.option("--planes", type=int, help="Simulated stream length in planes (default endless)."),
        click.option("--height", type=int, default=250, show_default=True, help="Plane height (.dat / camera / simulate)."),
        click.option("--width", type=int, default=400, show_default=True, help="Plane width (.dat / camera / simulate)."),
        click.option("--with-head", is_flag=True, help="The .dat has 16 extra head columns."),
        click.option("--block-planes", type=int, default=40, show_default=True, help="Planes per capture block."),
        click.option("--ring-planes", type=int, default=4000, show_default=True, help="Ring capacity in planes (bounded memory)."),
        click.option("--dtype", type=click.Choice(["float32", "float16"]), default="float32", show_default=True),
        click.option("--bind", default="tcp://127.0.0.1:5555", show_default=True, help="PUB (XPUB) address."),
        click.option("--control", default="tcp://127.0.0.1:5556", show_default=True, help="REP control address."),
        click.option("--wait-subscribers", type=int, default=0, show_default=True,
                     help="Start streaming once N frame subscribers are connected."),
        click.option("--camera-library", type=click.Path(dir_okay=False), help="Path of the SpikeLink library."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def register(main: click.Group, bench: click.Group) -> None:
    @main.command("run")
    @_run_options
    def run(replay, camera, simulate, method, backend, device, checkpoint, window, hop, policy, realtime, rate_hz,
            speed, loop, planes, height, width, with_head, block_planes, ring_planes, dtype, bind, control,
            wait_subscribers, camera_library) -> None:
        """Run the live pipeline: capture -> ring -> reconstruction -> ZeroMQ frames.

        Exit codes: 0 clean end or signal, 2 bad arguments/input, 3 source failure,
        4 backend unavailable, 5 cannot bind an address.
        """
        from edge.capture import SourceKind, SourceSpec
        from edge.daemon import Daemon, DaemonConfig

        chosen = [name for name, on in (("--replay", replay), ("--camera", camera), ("--simulate", simulate)) if on]
        if len(chosen) != 1:
            raise click.UsageError(f"choose exactly one source: --replay FILE, --camera or --simulate [SCENE] "
                                   f"(got {', '.join(chosen) or 'none'})")
        for name, value, low in (("--hop", hop, 1), ("--ring-planes", ring_planes, 2), ("--block-planes", block_planes, 1),
                                 ("--height", height, 1), ("--width", width, 1), ("--wait-subscribers", wait_subscribers, 0)):
            if value < low:
                raise click.BadParameter(f"must be >= {low}, got {value}", param_hint=name)
        if not rate_hz > 0 or not speed > 0:
            raise click.BadParameter(f"--rate-hz and --speed must be positive, got {rate_hz} and {speed}")
        if realtime and not replay:
            raise click.UsageError("--realtime applies to --replay (camera and simulator are live already)")
        kind = SourceKind.REPLAY if replay else SourceKind.CAMERA if camera else SourceKind.SIMULATE
        spec = SourceSpec(kind=kind, path=replay, block_planes=block_planes, realtime=realtime, rate_hz=rate_hz,
                          speed=speed, loop=loop, with_head=with_head, scene=simulate, planes=planes,
                          height=height, width=width, camera_library=camera_library)
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

    @bench.command("pipeline")
    @click.argument("file", required=False, type=click.Path(dir_okay=False, exists=True))
    @click.option("--seconds", type=float, default=10.0, show_default=True, help="Measured time per run.")
    @click.option("--warmup", type=float, default=2.0, show_default=True, help="Seconds ignored at the start.")
    @click.option("--rate-hz", type=float, default=40_000.0, show_default=True)
    @click.option("--hop", type=int, default=DEFAULT_HOP_PLANES, show_default=True)
    @click.option("--method", type=click.Choice(METHOD_NAMES), default="tfp", show_default=True)
    @click.option("--backend", type=click.Choice([b.value for b in BackendName]), default="auto", show_default=True)
    @click.option("--ring-planes", type=int, default=4000, show_default=True)
    @click.option("--find-max", is_flag=True, help="Then search the highest plane rate sustained without overruns.")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
    def bench_pipeline(file, seconds, warmup, rate_hz, hop, method, backend, ring_planes, find_max, as_json) -> None:
        """Real-time replay through a daemon subprocess: published frames/s, overruns, skips, latency."""
        from edge.bench_pipeline import run_bench

        run_bench(file, seconds=seconds, warmup_s=warmup, rate_hz=rate_hz, hop=hop, method=method, backend=backend,
                  ring_planes=ring_planes, find_max=find_max, as_json=as_json)
