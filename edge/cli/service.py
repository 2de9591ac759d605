"""``spike-edge service unit CONFIG``: a hardened systemd unit that runs ``spike-edge run --config CONFIG``.

The configuration is checked first, exactly as ``spike-edge run --config CONFIG`` would read it (the
``run`` command's own options and parse functions), so a unit is never written for a file the
daemon would refuse (exit code 2, naming the key). What it says then shapes the unit: the ring's
size in ``/dev/shm`` (a comment, and a warning on stderr when this machine's ``/dev/shm`` is
smaller), whether devices can be hidden (``PrivateDevices=yes`` unless the source is a camera or
a network may run on CUDA; ``--device PATH`` lists the nodes allowed instead), and the metrics
address in the header comment.

The unit (``docs/deploy.md`` explains each choice): ``Type=notify`` (the daemon sends READY,
STATUS and WATCHDOG itself, ``edge.live.service``), ``WatchdogSec``, ``Restart=on-failure`` except
for exit code 2 (a bad configuration does not fix itself), ``DynamicUser=yes`` or ``--user NAME``,
``ProtectSystem=strict``, ``ProtectHome=read-only``, ``PrivateTmp``, ``RuntimeDirectory``, no
capabilities, a system-call filter, and the configuration's folder as working directory (relative
paths in the file resolve beside it).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from edge.live.config import DaemonConfig
from edge.live.ring import HEADER_BYTES
from edge.live.sources import kind_of
from edge.reconstruction.backends.base import Device
from edge.reconstruction.methods import method_spec
from firmware_io.exits import ExitCodeGroup, fail

UNIT_NAME = "spike-edge"
DEFAULT_WATCHDOG_S = 30.0
SHM = "/dev/shm"
RING_SLOT_OVERHEAD_BYTES = 16  # a stamp and a capture time per plane (edge.live.ring)


def load_run_config(path: Path) -> DaemonConfig:
    """``path`` read as ``spike-edge run --config PATH`` reads it; a bad file fails with exit code 2."""
    from edge.cli.run import run

    try:
        ctx = run.make_context("run", ["--config", str(path)])
    except click.ClickException as exc:
        fail(f"{path}: {exc.format_message()}")
    with ctx:
        given = {name for name in ctx.params
                 if ctx.get_parameter_source(name) not in (None, click.core.ParameterSource.DEFAULT)}
        try:
            return DaemonConfig.from_options(ctx.params, given=given)
        except ValueError as exc:
            fail(f"{path}: {exc}")


def _systemd_word(text: str) -> str:
    """One word of a unit's command line: ``%`` escaped, quoted when it holds spaces or quotes."""
    text = text.replace("%", "%%")
    if any(c.isspace() for c in text) or any(c in text for c in "\"'\\;"):
        text = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


def _shm_note(config: DaemonConfig) -> tuple[list[str], str | None]:
    """Comment lines about the ring in /dev/shm, and a warning when this machine's is too small."""
    try:
        geometry = config.source.geometry()
    except (OSError, ValueError) as exc:
        return [f"# Shared memory: the ring's size is unknown here ({exc});",
                f"#   it is --ring-planes ({config.ring_planes}) x the plane's bytes, in {SHM}."], None
    ring_bytes = HEADER_BYTES + config.ring_planes * (geometry.plane_bytes + RING_SLOT_OVERHEAD_BYTES)
    lines = [f"# Shared memory: the ring takes {ring_bytes / 1e6:.1f} MB of {SHM} ({config.ring_planes} planes of "
             f"{geometry} = {geometry.plane_bytes:,} B).",
             f"#   {SHM} is a tmpfs (half of RAM by default, 64 MB in a Docker container): check `df -h {SHM}`;",
             "#   raise it with `tmpfs /dev/shm tmpfs defaults,nosuid,nodev,size=1G 0 0` in /etc/fstab",
             "#   (then `mount -o remount /dev/shm`), or `--shm-size` for a container."]
    try:
        st = os.statvfs(SHM)
        free = st.f_bavail * st.f_frsize
    except OSError:
        return lines, None
    warning = None
    if free < ring_bytes:
        warning = (f"{SHM} has {free / 1e6:.1f} MB free here but the ring needs {ring_bytes / 1e6:.1f} MB: "
                   "enlarge it (see the comment in the unit) or lower ring-planes")
    return lines, warning


def _needs_devices(config: DaemonConfig) -> bool:
    """Whether the daemon may open device nodes: a camera, or a network that may run on CUDA."""
    if config.source.uses_devices:
        return True
    if not method_spec(config.method).learned:
        return False
    return config.device.value != Device.CPU.value  # auto may pick CUDA on the machine that runs the unit


def render_unit(config_path: Path, config: DaemonConfig, *, user: str | None, groups: tuple[str, ...],
                devices: tuple[str, ...], watchdog_s: float, python: str) -> tuple[str, list[str]]:
    """The unit's text and the warnings for stderr."""
    warnings: list[str] = []
    shm_lines, shm_warning = _shm_note(config)
    if shm_warning:
        warnings.append(shm_warning)
    kind = kind_of(config.source).value
    exec_start = " ".join(_systemd_word(w) for w in (python, "-m", "edge", "run", "--config", str(config_path)))
    metrics = f"{config.metrics.url()}/metrics" if config.metrics is not None else "off (add metrics = \"127.0.0.1:9464\")"
    lines = [
        f"# {UNIT_NAME}.service, written by `spike-edge service unit {config_path}`.",
        f"# Install: save it as /etc/systemd/system/{UNIT_NAME}.service, then",
        f"#   systemctl daemon-reload && systemctl enable --now {UNIT_NAME}",
        f"# Logs: journalctl -u {UNIT_NAME} -f    Status line (frames/s, losses): systemctl status {UNIT_NAME}",
        f"# Runs: {kind} source, {config.method.value}, frames on {config.bind}, control on {config.control}",
        f"# Metrics: {metrics}",
        *shm_lines,
        "",
        "[Unit]",
        f"Description=spike-edge live daemon ({config_path})",
        "After=network-online.target",
        "Wants=network-online.target",
        "StartLimitIntervalSec=300",
        "StartLimitBurst=5",
        "",
        "[Service]",
        "Type=notify",
        "NotifyAccess=main",
        f"ExecStart={exec_start}",
        f"WorkingDirectory={_systemd_word(str(config_path.parent))}",
        "Environment=PYTHONUNBUFFERED=1",
        f"SyslogIdentifier={UNIT_NAME}",
        "# READY=1 comes once the source has started; networks and TensorRT engines take a while to load.",
        "TimeoutStartSec=180",
        "TimeoutStopSec=15",
        "# WATCHDOG=1 is sent from the daemon's loop between windows: keep this above the slowest batch.",
        f"WatchdogSec={watchdog_s:g}",
        "Restart=on-failure",
        "RestartSec=2",
        "# exit code 2 is a bad configuration or input: restarting does not fix it.",
        "RestartPreventExitStatus=2",
        "",
        "# Who it runs as",
    ]
    if user is None:
        lines += ["# A user made for each run (no files of its own; RemoveIPC drops a ring left in /dev/shm).",
                  "DynamicUser=yes"]
    else:
        lines += [f"User={user}", f"Group={user}", "RemoveIPC=yes"]
    if groups:
        lines.append(f"SupplementaryGroups={' '.join(groups)}")
    lines += [
        "",
        "# Files: the whole tree read-only, /tmp private, /run/spike-edge for ipc:// endpoints.",
        "ProtectSystem=strict",
        "ProtectHome=read-only",
        "PrivateTmp=yes",
        f"RuntimeDirectory={UNIT_NAME}",
        "RuntimeDirectoryMode=0750",
        "UMask=0027",
        "",
        "# Devices",
    ]
    if devices:
        lines += ["DevicePolicy=closed", *(f"DeviceAllow={_systemd_word(d)} rw" for d in devices)]
    elif _needs_devices(config):
        lines.append("# Not restricted: a camera or a GPU needs its device nodes; list them with "
                     "`--device PATH` to close the rest.")
    else:
        lines.append("PrivateDevices=yes")
    lines += [
        "",
        "# Kernel, privileges and system calls",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=",
        "AmbientCapabilities=",
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectKernelLogs=yes",
        "ProtectControlGroups=yes",
        "ProtectClock=yes",
        "ProtectHostname=yes",
        "ProtectProc=invisible",
        "LockPersonality=yes",
        "RestrictSUIDSGID=yes",
        "RestrictRealtime=yes",
        "RestrictNamespaces=yes",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
        "SystemCallArchitectures=native",
        "SystemCallFilter=@system-service",
        "SystemCallErrorNumber=EPERM",
        "# MemoryDenyWriteExecute is left off: torch, ONNX Runtime and TensorRT generate code at run time.",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
    ]
    return "\n".join(lines) + "\n", warnings


@click.group("service", cls=ExitCodeGroup)
def service() -> None:
    """Run the daemon as a system service."""


@service.command("unit")
@click.argument("config", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--user", help="Run as this existing system user (default: DynamicUser=yes, a user made per run).")
@click.option("--group", "groups", multiple=True, help="Supplementary group (e.g. video for a camera); repeatable.")
@click.option("--device", "devices", multiple=True, metavar="PATH",
              help="A device node the daemon may open (DeviceAllow=), the rest closed; repeatable.")
@click.option("--watchdog-s", type=click.FloatRange(min=1), default=DEFAULT_WATCHDOG_S, show_default=True,
              help="WatchdogSec: restart when the loop has not kicked for this long.")
def unit(config: Path, user: str | None, groups: tuple[str, ...], devices: tuple[str, ...], watchdog_s: float) -> None:
    """Print a hardened systemd unit running `spike-edge run --config CONFIG` (Type=notify, watchdog).

    CONFIG is the daemon's TOML file (keys = `spike-edge run` options); it is checked as `run`
    would read it. Save the output as /etc/systemd/system/spike-edge.service.
    """
    path = config.resolve()
    daemon_config = load_run_config(path)
    for name, values in (("--user", (user,) if user else ()), ("--group", groups)):
        for value in values:
            if not value or any(c.isspace() for c in value):
                fail(f"{name} must be a user or group name, got {value!r}")
    for device in devices:
        if not device.startswith("/dev/") and not device.startswith(("char-", "block-")):
            fail(f"--device must be a /dev/... node or a char-/block- device class, got {device!r}")
    text, warnings = render_unit(path, daemon_config, user=user, groups=groups, devices=devices,
                                 watchdog_s=watchdog_s, python=sys.executable)
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)
    click.echo(text, nl=False)


