"""The daemon's typed configuration (``DaemonConfig``) and the one parse function of each of its settings.

Fields are enums and typed values: ``method`` (``Method``), ``backend`` (``BackendName``), ``device``
(``DeviceSetting``: a ``Device`` or ``auto``), ``precision`` (a ``PrecisionSetting`` for the networks; None:
the backend's default), ``policy`` (``WorkerPolicy``; None: ``all`` for a
deterministic replay, ``latest`` for live sources), ``dtype`` (a ``PayloadDtype`` the daemon
publishes), hop, window and ring sizes in planes, the ring's cap in MB, endpoints, CURVE keys
(``edge.live.security``), the ``latest`` policy's latency budget (ms), the time after which a capture
process that makes no progress is a source failure (s), ``wait_subscribers`` (None: 1 for a
deterministic replay, so that nothing is published into nothing, 0 for live sources), the source
(``edge.live.sources``) and the raw recording (``record*``: ``recording`` gives them as
``edge.live.recorder.RecordSettings``).

Each setting is checked and converted once, where it enters, by its ``parse_*`` function
(``ValueError`` quoting the value): the command line and a TOML ``--config`` file through
``OPTIONS`` (``edge.cli.run`` turns them into click options whose types call ``parse``), the
control socket's ``set`` through ``Daemon.apply_settings``. ``DaemonConfig.from_options`` builds
the configuration from parsed values; code after it trusts the types.

Security (checked when a ``DaemonConfig`` is built): ``--curve-secret`` and ``--curve-clients`` come
together; without them both endpoints must be local (``edge.live.security.is_local_endpoint``)
unless ``--insecure`` is given; with CURVE, ``--insecure`` only lets ``--metrics`` listen beyond loopback
(given with CURVE and no exposed metrics address: an error).

``metrics`` (``--metrics HOST:PORT``, an ``HttpAddress``) serves Prometheus metrics
(``edge.live.metrics``); an address beyond loopback is refused unless ``insecure`` is set.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.live.options import Option, spellings, to_float, to_int, to_member, to_text
from edge.live.recorder import DEFAULT_BUFFER_MB, DEFAULT_MIN_FREE_MB, DEFAULT_SEGMENT_MB, MB, RecordSettings
from edge.live.security import ClientAllowList, ServerKey, is_local_endpoint
from edge.live.sources import SourceConfig, selectors, source_from_options, source_options
from edge.live.worker import DEFAULT_HOP_PLANES, DEFAULT_LATENCY_BUDGET_MS, DEFAULT_MAX_BATCH, WorkerPolicy
from edge.protocol.endpoints import DEFAULT_CONTROL_URL, DEFAULT_PUB_URL, HttpAddress, parse_http_address
from edge.protocol.wire import PayloadDtype
from edge.reconstruction.backends.base import BackendName, Device
from edge.reconstruction.methods import Method, method_spec
from edge.reconstruction.models import PrecisionSetting

DEFAULT_METHOD = Method.TFP
DEFAULT_RING_PLANES = 4000  # 100 ms at 40 kHz; 50 MB at 250x400
MIN_RING_PLANES = 2
DEFAULT_MAX_RING_MB = 1024  # MB (10**6 bytes): 2 s of a 250x400 camera at 40 kHz
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


def parse_precision(value: Any) -> PrecisionSetting:
    return to_member(value, "precision", PrecisionSetting)


def parse_checkpoint(value: Any) -> str:
    """A network weights file name."""
    return to_text(value, "checkpoint")


def parse_engine(value: Any) -> str:
    """An engine directory of ``spike-train export`` (its manifest is checked when the network is built)."""
    return to_text(value, "engine")


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


def parse_max_ring_mb(value: Any) -> int:
    """The largest ring the daemon creates, in MB (10**6 bytes): an integer >= 1."""
    return to_int(value, "max_ring_mb", minimum=1)


def parse_dtype(value: Any) -> PayloadDtype:
    """The frame payload type: one of ``PUBLISHED_DTYPES``."""
    return to_member(value, "dtype", PUBLISHED_DTYPES)


def parse_endpoint(value: Any) -> str:
    """A ZeroMQ address (bound when the daemon starts: a bad one is a bind failure, exit code 5)."""
    return to_text(value, "endpoint")


def parse_curve_secret(value: Any) -> ServerKey:
    """The daemon's secret certificate file (``server.key_secret``): read and checked now."""
    return ServerKey.load(to_text(value, "curve_secret"))


def parse_curve_clients(value: Any) -> ClientAllowList:
    """The folder of allowed clients' public certificates (``*.key``): read and checked now."""
    return ClientAllowList.load(to_text(value, "curve_clients"))


def parse_wait_subscribers(value: Any) -> int:
    """Frame subscribers to wait for before streaming: an integer >= 0."""
    return to_int(value, "wait_subscribers", minimum=0)


def parse_record(value: Any) -> str:
    """The folder a raw recording goes to."""
    return to_text(value, "record")


def parse_record_segment_mb(value: Any) -> float:
    """Segment size in MB (10^6 bytes): a positive number."""
    return to_float(value, "record_segment_mb", positive=True)


def parse_record_buffer_mb(value: Any) -> float:
    """The recorder's buffer in MB: a positive number."""
    return to_float(value, "record_buffer_mb", positive=True)


def parse_record_max_mb(value: Any) -> float:
    """The recording's quota in MB: a positive number."""
    return to_float(value, "record_max_mb", positive=True)


def parse_record_min_free_mb(value: Any) -> float:
    """Free space to leave on the recording's file system, in MB: a number >= 0."""
    number = to_float(value, "record_min_free_mb")
    if number < 0:
        raise ValueError(f"record_min_free_mb must be >= 0, got {value!r}")
    return number


#: The options of the raw recording (``edge.live.recorder``); the others need ``--record``.
RECORD_OPTIONS: tuple[Option, ...] = (
    Option("record", Path, parse_record, value_name="DIR",
           help="Record every captured plane, bit for bit, into rotating .dat segments with JSON sidecars in DIR "
                "(a new folder; read it back with info/reconstruct/run --replay DIR)."),
    Option("record_segment_mb", float, parse_record_segment_mb, default=DEFAULT_SEGMENT_MB, show_default=True,
           help="Segment size in MB (10^6 bytes)."),
    Option("record_buffer_mb", float, parse_record_buffer_mb, default=DEFAULT_BUFFER_MB, show_default=True,
           help="The recorder's shared-memory buffer in MB. Live sources never wait for the recorder: when it "
                "falls this far behind it drops planes (counted); a deterministic --replay waits for it instead."),
    Option("record_max_mb", float, parse_record_max_mb,
           help="Quota in MB: the recording stops (counted, the stream goes on) before it would exceed it."),
    Option("record_min_free_mb", float, parse_record_min_free_mb, default=DEFAULT_MIN_FREE_MB, show_default=True,
           help="Stop the recording before the file system would have less than this free (MB)."),
)

def parse_metrics(value: Any) -> HttpAddress:
    """Where to serve Prometheus metrics: ``HOST:PORT``, ``[IPV6]:PORT`` or a bare ``PORT`` (loopback)."""
    return parse_http_address(value, "metrics")


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
    Option("precision", str, parse_precision, choices=spellings(PrecisionSetting),
           help="Network precision (torch: fp32/bf16 on the CPU, fp16/bf16/fp32 on CUDA); default fp32 on the CPU, "
                "fp16 on CUDA; auto: the pick `spike-edge bench reconstruct` measured here, else the rule in "
                "docs/precision.md (the log says which and why)."),
    Option("checkpoint", Path, parse_checkpoint, help="Network weights (lrn/stir)."),
    Option("engine", Path, parse_engine, value_name="DIR",
           help="Engine directory of `spike-train export` (lrn/stir), instead of --checkpoint; its manifest must "
                "fit the geometry, the device and this machine."),
    Option("window", int, parse_window, help="Window planes (classical methods; networks are fixed)."),
    Option("hop", int, parse_hop, default=DEFAULT_HOP_PLANES, show_default=True,
           help="Planes between frames (40 = 1,000 frames/s at 40 kHz)."),
    Option("policy", str, parse_policy, choices=spellings(WorkerPolicy),
           help="Worker policy; default all for --replay, latest for --camera/--simulate/--realtime."),
    Option("ring_planes", int, parse_ring_planes, default=DEFAULT_RING_PLANES, show_default=True,
           help="Ring capacity in planes (bounded memory)."),
    Option("max_ring_mb", int, parse_max_ring_mb, default=DEFAULT_MAX_RING_MB, show_default=True,
           help="Refuse a ring larger than this many MB (10**6 bytes) of shared memory; a ring must also fit "
                "the free space of /dev/shm. Checked before the ring is created."),
    Option("dtype", str, parse_dtype, choices=spellings(PUBLISHED_DTYPES), default=DEFAULT_DTYPE.value,
           show_default=True),
    Option("bind", str, parse_endpoint, default=DEFAULT_PUB_URL, show_default=True, help="PUB (XPUB) address."),
    Option("control", str, parse_endpoint, default=DEFAULT_CONTROL_URL, show_default=True,
           help="Control socket address (ROUTER: REQ or DEALER clients)."),
    Option("wait_subscribers", int, parse_wait_subscribers,
           help="Start streaming once N frame subscribers are connected; default 1 for a deterministic replay "
                "(--replay without --realtime: nothing is published into nothing), 0 for live sources."),
    Option("latency_budget_ms", float, parse_latency_budget_ms, default=DEFAULT_LATENCY_BUDGET_MS, show_default=True,
           help="Policy latest: skip to the newest window only when the oldest ready one has waited longer than "
                "this since its capture."),
    Option("capture_stall_s", float, parse_capture_stall_s, default=DEFAULT_CAPTURE_STALL_S, show_default=True,
           help="A capture process without progress this long is a source failure (exit 3); health says "
                "degraded after 0.5 s."),
    *RECORD_OPTIONS,
    Option("curve_secret", Path, parse_curve_secret, value_name="FILE",
           help="CURVE: the daemon's secret certificate (server.key_secret of `spike-edge keys generate`); "
                "with --curve-clients, both sockets accept listed clients only."),
    Option("curve_clients", Path, parse_curve_clients, value_name="DIR",
           help="CURVE: folder of the allowed clients' public certificates (*.key; re-read when it changes)."),
    Option("metrics", str, parse_metrics, value_name="HOST:PORT",
           help="Serve Prometheus metrics at http://HOST:PORT/metrics (a bare PORT: 127.0.0.1); "
                "a non-loopback address needs --insecure."),
    Option("insecure", bool, None,
           help="Allow a non-loopback --bind/--control without CURVE, or a non-loopback --metrics address (metrics "
                "have no authentication), and log a warning; refused otherwise."),
)


@dataclass(frozen=True)
class DaemonConfig:
    """Everything ``spike-edge run`` runs with, typed (see the module docstring)."""

    source: SourceConfig
    method: Method = DEFAULT_METHOD
    backend: BackendName = BackendName.AUTO
    device: DeviceSetting = DeviceSetting.AUTO
    precision: PrecisionSetting | None = None  # None: the backend's default
    checkpoint: str | None = None
    engine: str | None = None  # an engine directory (spike-train export) instead of weights
    window: int | None = None  # None: the method's window
    hop: int = DEFAULT_HOP_PLANES
    policy: WorkerPolicy | None = None  # None: 'all' for deterministic replay, 'latest' for live sources
    ring_planes: int = DEFAULT_RING_PLANES
    max_ring_mb: int = DEFAULT_MAX_RING_MB
    dtype: PayloadDtype = DEFAULT_DTYPE
    bind: str = DEFAULT_PUB_URL
    control: str = DEFAULT_CONTROL_URL
    wait_subscribers: int | None = None  # None: 1 for a deterministic replay, 0 for live sources
    latency_budget_ms: float = DEFAULT_LATENCY_BUDGET_MS
    capture_stall_s: float = DEFAULT_CAPTURE_STALL_S
    curve_secret: ServerKey | None = None
    curve_clients: ClientAllowList | None = None
    metrics: HttpAddress | None = None  # None: no metrics server
    insecure: bool = False
    max_batch: int = DEFAULT_MAX_BATCH
    record: str | None = None  # the recording folder; None: no recording
    record_segment_mb: float = DEFAULT_SEGMENT_MB
    record_buffer_mb: float = DEFAULT_BUFFER_MB
    record_max_mb: float | None = None
    record_min_free_mb: float = DEFAULT_MIN_FREE_MB

    def __post_init__(self) -> None:
        if self.engine is not None and self.checkpoint is not None:
            raise ValueError("give --checkpoint or --engine, not both (an engine directory carries its own weights)")
        if (self.curve_secret is None) != (self.curve_clients is None):
            raise ValueError("CURVE needs both --curve-secret FILE and --curve-clients DIR "
                             f"(got only {'--curve-secret' if self.curve_clients is None else '--curve-clients'})")
        self._check_metrics_exposure()
        metrics_exposed = self.metrics is not None and not self.metrics.loopback
        if self.curve and self.insecure and not metrics_exposed:
            raise ValueError("--insecure contradicts --curve-secret/--curve-clients: give one or the other "
                             "(with CURVE, --insecure only lets --metrics listen beyond loopback)")
        if self.curve or self.insecure:
            return
        for flag, url in (("--bind", self.bind), ("--control", self.control)):
            if not is_local_endpoint(url):
                raise ValueError(
                    f"refusing to serve {flag} {url} without authentication: it is not a loopback address. "
                    "Give --curve-secret FILE and --curve-clients DIR (create them with `spike-edge keys "
                    "generate DIR`), or --insecure to let any host that reaches it read and control the daemon")

    def _check_metrics_exposure(self) -> None:
        if self.metrics is not None and not self.metrics.loopback and not self.insecure:
            raise ValueError(
                f"refusing to serve --metrics {self.metrics} without --insecure: it is not a loopback address and "
                "the metrics endpoint has no authentication (serve it on 127.0.0.1 and scrape through a proxy or "
                "tunnel, or give --insecure)")

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
        if options.get("record") is None:
            needing = [option.flag for option in RECORD_OPTIONS[1:] if option.name in given]
            if needing:
                raise ValueError(f"{', '.join(needing)} appl{'y' if len(needing) > 1 else 'ies'} with --record DIR")
        daemon = {option.name: options[option.name] if option.name in options else option.default_value()
                  for option in OPTIONS}
        return cls(source=source, **daemon)

    @property
    def curve(self) -> bool:
        """Both sockets use CURVE: every client that gets through is in the allow-list."""
        return self.curve_secret is not None

    @property
    def effective_policy(self) -> WorkerPolicy:
        if self.policy is not None:
            return self.policy
        return WorkerPolicy.LATEST if self.source.live else WorkerPolicy.ALL

    @property
    def recording(self) -> RecordSettings | None:
        """The raw recording's settings in bytes, or None without ``--record``."""
        if self.record is None:
            return None
        return RecordSettings(folder=self.record, segment_bytes=int(self.record_segment_mb * MB),
                              buffer_bytes=int(self.record_buffer_mb * MB),
                              max_bytes=None if self.record_max_mb is None else int(self.record_max_mb * MB),
                              min_free_bytes=int(self.record_min_free_mb * MB))

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

