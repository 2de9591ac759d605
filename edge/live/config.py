"""The daemon's typed configuration (``DaemonConfig``) and the one parse function of each of its settings.

Fields are enums and typed values: ``method`` (``Method``), ``backend`` (``BackendName``), ``device``
(``DeviceSetting``: a ``Device`` or ``auto``), ``policy`` (``WorkerPolicy``; None: ``all`` for a
deterministic replay, ``latest`` for live sources), ``dtype`` (a ``PayloadDtype`` the daemon
publishes), hop, window and ring sizes in planes, endpoints, the ``latest`` policy's latency budget
(ms), the time after which a capture process that makes no progress is a source failure (s),
``wait_subscribers`` (None: 1 for a deterministic replay, so that nothing is published into
nothing, 0 for live sources), and the source (``edge.live.sources``).

Each setting is checked and converted once, where it enters, by its ``parse_*`` function
(``ValueError`` quoting the value): the command line and a TOML ``--config`` file through
``OPTIONS`` (``edge.cli.run`` turns them into click options whose types call ``parse``), the
control socket's ``set`` through ``Daemon.apply_settings``. ``DaemonConfig.from_options`` builds
the configuration from parsed values; code after it trusts the types.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.live.options import Option, spellings, to_float, to_int, to_member, to_text
from edge.live.sources import SourceConfig, selectors, source_from_options, source_options
from edge.live.worker import DEFAULT_HOP_PLANES, DEFAULT_LATENCY_BUDGET_MS, DEFAULT_MAX_BATCH, WorkerPolicy
from edge.protocol.endpoints import DEFAULT_CONTROL_URL, DEFAULT_PUB_URL
from edge.protocol.wire import PayloadDtype
from edge.reconstruction.backends.base import BackendName, Device
from edge.reconstruction.methods import Method, method_spec

DEFAULT_METHOD = Method.TFP
DEFAULT_RING_PLANES = 4000  # 100 ms at 40 kHz; 50 MB at 250x400
MIN_RING_PLANES = 2
DEFAULT_DTYPE = PayloadDtype.FLOAT32
DEFAULT_CAPTURE_STALL_S = 5.0  # a capture process without progress this long is a source failure (exit 3)
#: What the daemon publishes: reconstructions are floats (``uint8`` frames would need a scale).
PUBLISHED_DTYPES = (PayloadDtype.FLOAT32, PayloadDtype.FLOAT16)

#: ``--device``: ``auto`` (CUDA for networks when available) or one of ``Device`` (derived from it).
DeviceSetting = enum.Enum("DeviceSetting", [("AUTO", "auto"), *((d.name, d.value) for d in Device)], type=str,
                          module=__name__)


def parse_method(value: Any) -> Method:
    return to_member(value, "method", Method)


def parse_backend(value: Any) -> BackendName:
    return to_member(value, "backend", BackendName)


def parse_device(value: Any) -> DeviceSetting:
    return to_member(value, "device", DeviceSetting)


def parse_checkpoint(value: Any) -> str:
    """A network weights file name."""
    return to_text(value, "checkpoint")


def parse_window(value: Any) -> int | None:
    """Window planes: an integer >= 1, or None (the method's own window)."""
    return None if value is None else to_int(value, "window", minimum=1)


def parse_hop(value: Any) -> int:
    """Planes between frames: an integer >= 1."""
    return to_int(value, "hop", minimum=1)


def parse_policy(value: Any) -> WorkerPolicy:
    return to_member(value, "policy", WorkerPolicy)


def parse_ring_planes(value: Any) -> int:
    """Ring capacity in planes: an integer >= 2."""
    return to_int(value, "ring_planes", minimum=MIN_RING_PLANES)


def parse_dtype(value: Any) -> PayloadDtype:
    """The frame payload type: one of ``PUBLISHED_DTYPES``."""
    return to_member(value, "dtype", PUBLISHED_DTYPES)


def parse_endpoint(value: Any) -> str:
    """A ZeroMQ address (bound when the daemon starts: a bad one is a bind failure, exit code 5)."""
    return to_text(value, "endpoint")


def parse_wait_subscribers(value: Any) -> int:
    """Frame subscribers to wait for before streaming: an integer >= 0."""
    return to_int(value, "wait_subscribers", minimum=0)


def parse_latency_budget_ms(value: Any) -> float:
    """How long the oldest ready window may wait before ``latest`` skips to the newest: a number >= 0 (ms)."""
    budget = to_float(value, "latency_budget_ms")
    if budget < 0:
        raise ValueError(f"latency_budget_ms must be >= 0, got {value!r}")
    return budget


def parse_capture_stall_s(value: Any) -> float:
    """Seconds without progress after which the capture process counts as failed: a number > 0."""
    return to_float(value, "capture_stall_s", positive=True)


#: The daemon's own options (the sources' are in ``edge.live.sources``), in command-line order.
OPTIONS: tuple[Option, ...] = (
    Option("method", str, parse_method, choices=spellings(Method), default=DEFAULT_METHOD.value, show_default=True),
    Option("backend", str, parse_backend, choices=spellings(BackendName), default=BackendName.AUTO.value,
           show_default=True),
    Option("device", str, parse_device, choices=spellings(DeviceSetting), default=DeviceSetting.AUTO.value,
           show_default=True, help="auto: CUDA for networks when available."),
    Option("checkpoint", Path, parse_checkpoint, help="Network weights (lrn/stir)."),
    Option("window", int, parse_window, help="Window planes (classical methods; networks are fixed)."),
    Option("hop", int, parse_hop, default=DEFAULT_HOP_PLANES, show_default=True,
           help="Planes between frames (40 = 1,000 frames/s at 40 kHz)."),
    Option("policy", str, parse_policy, choices=spellings(WorkerPolicy),
           help="Worker policy; default all for --replay, latest for --camera/--simulate/--realtime."),
    Option("ring_planes", int, parse_ring_planes, default=DEFAULT_RING_PLANES, show_default=True,
           help="Ring capacity in planes (bounded memory)."),
    Option("dtype", str, parse_dtype, choices=spellings(PUBLISHED_DTYPES), default=DEFAULT_DTYPE.value,
           show_default=True),
    Option("bind", str, parse_endpoint, default=DEFAULT_PUB_URL, show_default=True, help="PUB (XPUB) address."),
    Option("control", str, parse_endpoint, default=DEFAULT_CONTROL_URL, show_default=True,
           help="REP control address."),
    Option("wait_subscribers", int, parse_wait_subscribers,
           help="Start streaming once N frame subscribers are connected; default 1 for a deterministic replay "
                "(--replay without --realtime: nothing is published into nothing), 0 for live sources."),
    Option("latency_budget_ms", float, parse_latency_budget_ms, default=DEFAULT_LATENCY_BUDGET_MS, show_default=True,
           help="Policy latest: skip to the newest window only when the oldest ready one has waited longer than "
                "this since its capture."),
    Option("capture_stall_s", float, parse_capture_stall_s, default=DEFAULT_CAPTURE_STALL_S, show_default=True,
           help="A capture process without progress this long is a source failure (exit 3); health says "
                "degraded after 0.5 s."),
)


@dataclass(frozen=True)
class DaemonConfig:
    """Everything ``spike-edge run`` runs with, typed (see the module docstring)."""

    source: SourceConfig
    method: Method = DEFAULT_METHOD
    backend: BackendName = BackendName.AUTO
    device: DeviceSetting = DeviceSetting.AUTO
    checkpoint: str | None = None
    window: int | None = None  # None: the method's window
    hop: int = DEFAULT_HOP_PLANES
    policy: WorkerPolicy | None = None  # None: 'all' for deterministic replay, 'latest' for live sources
    ring_planes: int = DEFAULT_RING_PLANES
    dtype: PayloadDtype = DEFAULT_DTYPE
    bind: str = DEFAULT_PUB_URL
    control: str = DEFAULT_CONTROL_URL
    wait_subscribers: int | None = None  # None: 1 for a deterministic replay, 0 for live sources
    latency_budget_ms: float = DEFAULT_LATENCY_BUDGET_MS
    capture_stall_s: float = DEFAULT_CAPTURE_STALL_S
    max_batch: int = DEFAULT_MAX_BATCH

    @classmethod
    def from_options(cls, options: Mapping[str, Any], given: Collection[str] = ()) -> DaemonConfig:
        """The configuration from parsed option values (what the ``parse`` functions return).

        ``options`` holds the daemon's ``OPTIONS`` and every source's (``edge.live.sources``) by
        name; missing ones take their defaults. ``given``: the names the user set, for the check that
        no option of another source is given. ``ValueError`` for a combination that does not fit
        (a usage error; its message names the options).
        """
        known = {option.name for option in (*OPTIONS, *selectors(), *source_options())}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(f"unknown options {unknown}; known: {', '.join(sorted(known))}")
        source = source_from_options(options, given)
        daemon = {option.name: options[option.name] if option.name in options else option.default_value()
                  for option in OPTIONS}
        return cls(source=source, **daemon)

    @property
    def effective_policy(self) -> WorkerPolicy:
        if self.policy is not None:
            return self.policy
        return WorkerPolicy.LATEST if self.source.live else WorkerPolicy.ALL

    @property
    def effective_wait_subscribers(self) -> int:
        """Frame subscribers to wait for: as given, else 1 for a deterministic replay and 0 for live sources."""
        if self.wait_subscribers is not None:
            return self.wait_subscribers
        return 1 if self.deterministic else 0

    @property
    def deterministic(self) -> bool:
        """Lossless end to end: a file replayed as fast as it is consumed, every window processed."""
        return not self.source.live and self.effective_policy is WorkerPolicy.ALL


def resolve_device(setting: DeviceSetting, method: Method) -> Device:
    """The device ``setting`` means for ``method``: ``auto`` is CUDA for networks when available, else CPU."""
    if setting is not DeviceSetting.AUTO:
        return Device(setting.value)
    if not method_spec(method).learned:
        return Device.CPU
    try:
        import torch

        return Device.CUDA if torch.cuda.is_available() else Device.CPU
    except ImportError:
        return Device.CPU

