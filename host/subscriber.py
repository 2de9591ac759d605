"""Host-side subscriber of the frame stream: a SUB socket that yields typed ``Received`` items.

It follows ``edge.protocol.wire`` (the one contract) and adds what a client needs on top of it:

- **Gaps.** ``seq`` counts published frames of a stream without holes, so a jump means the
  subscriber lost messages (publisher HWM or a slow reader). Each frame carries ``gap_frames``
  (frames missing right before it) and the totals are ``stats.gaps`` / ``stats.lost_frames``.
  An end-of-stream whose ``last_seq`` is beyond the newest frame seen adds the trailing loss.
- **Restarts.** A new ``stream_id``, or ``seq`` going back (typically to 0), starts a new stream:
  ``new_stream`` is set and ``stats.stream_restarts`` counts it; it is never a gap. The first
  frame seen is a new stream too (a late joiner has lost nothing).
- **Daemon-side drops.** The header's ``discontinuity`` flag and its cumulative
  ``ring_overrun_planes`` / ``worker_skipped_windows`` are surfaced in ``stats``; they are the
  daemon's losses, not the network's.
- **Latest-only.** A small RCVHWM plus draining to the newest frame before returning it.
  Frames read and thrown away that way are ``skipped_frames`` / ``stats.skipped_latest``,
  counted apart from gaps. Heartbeats read while draining are folded into one (the newest);
  an end-of-stream stops the drain and is returned right after the frame.
- **Timeouts.** ``next(timeout_s)`` returns ``None``; ``recv(timeout_s)`` and iteration raise
  ``SubscriberTimeout``. Nothing blocks without a bound.
- **Garbage.** Anything ``edge.protocol.wire.decode`` rejects (numbers that are not integers or out of
  range, absurd geometries, ...) and a frame whose shape or dtype differs from the one its stream
  declared with its first frame are counted in ``stats.malformed`` and skipped; the reason is kept in
  ``stats.last_error``. Nothing a publisher sends makes the subscriber raise.
- **Message size.** The socket refuses (libzmq ``ZMQ_MAXMSGSIZE``) any message part larger than
  ``max_message_bytes``: ``DEFAULT_MAX_MESSAGE_BYTES`` until a stream has declared its geometry,
  then that geometry's frame size plus ``HEADER_ALLOWANCE_BYTES`` (or the explicit
  ``max_message_bytes`` given to the constructor, fixed). libzmq refuses such a message by dropping
  the connection, for good; a socket monitor notices (``stats.disconnects``) and a new socket
  connects at once, after what the old one had queued. What the publisher had queued for the dropped
  connection is lost and shows as a ``seq`` gap. The receive queue is bounded in bytes too: RCVHWM
  is lowered so that RCVHWM x max message size stays within ``max_queue_bytes``.
- **Reconnect.** Heartbeats arrive at least once a second, so silence for
  ``heartbeat_timeout_s`` means a dead or restarted peer: the socket is closed (LINGER 0) and
  recreated, ``stats.reconnects`` counts it. Heartbeats are always subscribed for this, even
  when the caller did not ask for them (they are then counted, not returned).
- **End-of-stream** is sent a few times by the daemon; repeats are absorbed (returned once).
- **CURVE.** ``curve=CurveClient.load(key_file, server_file)`` (``edge.protocol.security``) for a
  daemon that runs with CURVE; a refused handshake means silence, and ``handshake_error`` says why.

Design: latest-only could use ZMQ_CONFLATE, but CONFLATE breaks multipart messages, so it is
done by hand. Once a drain has read anything it polls with 1 ms instead of 0 before calling the
queue empty, because libzmq refills the receive pipe from the TCP buffer asynchronously once the
reader makes room; a drain is capped at 50 ms so a publisher faster than the reader cannot starve it.
The reconnect decision is taken only after a poll came back empty, so queued messages are never
thrown away with the old socket.
The sequence logic is a small pure class (``SeqTracker``) so it can be property-tested alone.

libzmq applies ``ZMQ_MAXMSGSIZE`` and RCVHWM to a connection when it is made, so a new limit needs a
new socket. It is swapped make-before-break: the new socket connects and queues what it receives
(from its first frame on) while the old one keeps delivering. Both see the publisher's messages in
the same order, so as soon as the newest message the old one delivered shows up in the new one's
queue, the old socket is closed and the new one's queue continues right after that message: nothing
is lost or repeated, and a lossless replay stays lossless. If that does not happen within 2 s (a
publisher that dropped messages for one of them), the switch is made anyway and frames the old
socket already delivered are recognised by ``seq`` and dropped.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import zmq

from edge.protocol.wire import (
    TOPIC_EOS,
    TOPIC_FRAME,
    TOPIC_HEARTBEAT,
    TOPICS,
    EndOfStream,
    FrameHeader,
    Heartbeat,
    WireError,
    decode,
)
from edge.protocol.security import CurveClient, HandshakeWatch

log = logging.getLogger(__name__)

Kind = Literal["frame", "heartbeat", "eos"]
KINDS: tuple[Kind, ...] = ("frame", "heartbeat", "eos")
_KIND_OF_TOPIC: dict[bytes, Kind] = {TOPIC_FRAME: "frame", TOPIC_HEARTBEAT: "heartbeat", TOPIC_EOS: "eos"}

DEFAULT_RCVHWM = 1000  # libzmq's default: keeps about 1000 frames before the publisher drops
LATEST_RCVHWM = 2
DEFAULT_MAX_MESSAGE_BYTES = 32 * 2**20  # largest message part before a stream declared its geometry
HEADER_ALLOWANCE_BYTES = 64 * 2**10  # added to a declared frame size: headers, heartbeats with their stats
DEFAULT_MAX_QUEUE_BYTES = 64 * 2**20  # RCVHWM x max message size stays within this
_SWAP_TIMEOUT_S = 2.0  # longest make-before-break overlap of two sockets
_SWAP_BACKLOG = 4096  # most messages the new socket queues during the overlap
_MAX_POLL_MS = 250  # upper bound of one poll, so reconnect checks and Ctrl-C stay responsive
_MAX_DRAIN_S = 0.05  # latest-only: longest time spent draining before returning the newest frame



class _Default:
    """Marker type: "use the constructor's timeout" (None already means "wait forever")."""


_DEFAULT = _Default()


class SubscriberTimeout(TimeoutError):
    """Nothing the caller asked for arrived within the timeout."""


@dataclass(frozen=True)
class Received:
    """One item from the stream. ``kind`` says which of ``header``+``image``, ``heartbeat``, ``eos`` is set.

    ``image`` is a read-only view of the received payload (copy it to modify). ``recv_t_ns`` is
    ``time.monotonic_ns()`` at receipt, comparable with the header's timestamps on the same host.
    """

    kind: Kind
    recv_t_ns: int
    header: FrameHeader | None = None
    image: np.ndarray | None = None
    heartbeat: Heartbeat | None = None
    eos: EndOfStream | None = None
    gap_frames: int = 0  # frames missing (seq jumps) between the previous returned frame and this one
    skipped_frames: int = 0  # frames thrown away by latest-only draining right before this one
    new_stream: bool = False  # first frame seen of a stream (first ever, new stream_id, or seq restart)

    @property
    def gap(self) -> bool:
        return self.gap_frames > 0

    @property
    def seq(self) -> int | None:
        return self.header.seq if self.header is not None else None


@dataclass
class SubscriberStats:
    """Counters since the subscriber was created (daemon counters: the newest values seen)."""

    frames: int = 0  # frames decoded (returned or skipped by latest-only)
    returned_frames: int = 0
    heartbeats: int = 0
    eos: int = 0  # distinct end-of-stream messages (repeats not counted)
    gaps: int = 0  # seq jumps seen
    lost_frames: int = 0  # frames missing in those jumps
    skipped_latest: int = 0  # frames thrown away by latest-only draining
    malformed: int = 0  # messages skipped as not following the wire contract (reason: last_error)
    reconnects: int = 0
    disconnects: int = 0  # connections libzmq dropped (a message over the size limit, a peer gone); reopened at once
    stream_restarts: int = 0  # new streams after the first one
    discontinuities: int = 0  # frames flagged by the daemon
    ring_overrun_planes: int = 0  # daemon, cumulative for the current stream
    worker_skipped_windows: int = 0  # daemon, cumulative for the current stream
    timeouts: int = 0
    last_error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SeqTracker:
    """Pure sequence bookkeeping: per observed frame, how many were lost before it and whether a stream began."""

    stream_id: str | None = None
    last_seq: int | None = None

    def observe(self, stream_id: str, seq: int) -> tuple[int, bool]:
        """Return ``(frames lost right before this one, new stream?)`` and remember the frame."""
        if self.last_seq is None or stream_id != self.stream_id or seq <= self.last_seq:
            self.stream_id, self.last_seq = stream_id, seq
            return 0, True
        lost = seq - self.last_seq - 1
        self.last_seq = seq
        return lost, False

    def trailing_loss(self, stream_id: str, last_seq: int) -> int:
        """Frames of this stream announced by an end-of-stream but never seen."""
        if self.stream_id != stream_id or self.last_seq is None or last_seq <= self.last_seq:
            return 0
        lost = last_seq - self.last_seq
        self.last_seq = last_seq
        return lost


def message_limit_bytes(shape: tuple[int, int], dtype: str) -> int:
    """The ``ZMQ_MAXMSGSIZE`` for a stream of ``dtype`` frames of ``shape``: one frame plus the header allowance."""
    return int(shape[0]) * int(shape[1]) * np.dtype(dtype).itemsize + HEADER_ALLOWANCE_BYTES


def _identity(parts: list[bytes]) -> tuple[bytes, bytes]:
    """What tells one message from another across two sockets: its topic and header bytes."""
    return bytes(parts[0]) if parts else b"", bytes(parts[1]) if len(parts) > 1 else b""


def _peek_frame(parts: list[bytes]) -> tuple[str, int] | None:
    """``(stream_id, seq)`` of a well-formed frame message, else None (used only to order a socket swap)."""
    if len(parts) != 3 or bytes(parts[0]) != TOPIC_FRAME:
        return None
    try:
        msg = decode(parts)
    except WireError:
        return None
    return msg[0].stream_id, msg[0].seq


@dataclass
class _Swap:
    """A socket with new limits, connected while the old one still delivers (make-before-break)."""

    sock: zmq.Socket
    max_message_bytes: int
    stream_id: str | None  # the stream whose geometry gave the limit (None: the default limit)
    started: float
    first: tuple[str, int] | None = None  # (stream_id, seq) of the new socket's first frame
    backlog: collections.deque = dataclasses.field(default_factory=collections.deque)  # (recv_t_ns, parts)
    position: dict = dataclasses.field(default_factory=dict)  # (topic, header bytes) -> first index in backlog
    old_last: tuple[bytes, bytes] | None = None  # (topic, header bytes) of the old socket's newest message


def _normalise_topics(topics: Iterable[bytes | str]) -> tuple[bytes, ...]:
    out = []
    for topic in topics:
        topic = topic.encode() if isinstance(topic, str) else bytes(topic)
        if topic not in TOPICS:
            raise ValueError(f"unknown topic {topic!r}; expected some of {TOPICS}")
        out.append(topic)
    if not out:
        raise ValueError(f"topics is empty; expected some of {TOPICS}")
    return tuple(dict.fromkeys(out))


class Subscriber:
    """Subscribe to a spike-edge frame stream at ``url`` (e.g. ``tcp://127.0.0.1:5555``).

    ``topics``: which kinds are returned (bytes from ``edge.protocol.wire`` or their names).
    ``timeout_s``: default bound for ``next``/``recv``/iteration (None: wait forever, still
    reconnecting). ``rcvhwm``: receive high-water mark (default 1000, or 2 with ``latest_only``; lowered
    to keep ``max_queue_bytes``). ``max_message_bytes``: a fixed limit on any message part (default:
    ``DEFAULT_MAX_MESSAGE_BYTES``, then derived from the stream's declared geometry).
    """

    def __init__(
        self,
        url: str,
        *,
        topics: Iterable[bytes | str] = TOPICS,
        latest_only: bool = False,
        rcvhwm: int | None = None,
        timeout_s: float | None = None,
        heartbeat_timeout_s: float = 3.0,
        reconnect: bool = True,
        max_message_bytes: int | None = None,
        max_queue_bytes: int = DEFAULT_MAX_QUEUE_BYTES,
        context: zmq.Context | None = None,
        curve: CurveClient | None = None,
    ) -> None:
        if not isinstance(url, str) or "://" not in url:
            raise ValueError(f"url must look like tcp://HOST:PORT, got {url!r}")
        if heartbeat_timeout_s <= 0:
            raise ValueError(f"heartbeat_timeout_s must be > 0, got {heartbeat_timeout_s}")
        if timeout_s is not None and timeout_s < 0:
            raise ValueError(f"timeout_s must be >= 0 or None, got {timeout_s}")
        self.url = url
        self.topics = _normalise_topics(topics)
        self._kinds = {_KIND_OF_TOPIC[t] for t in self.topics}
        self.latest_only = latest_only
        self.rcvhwm = int(rcvhwm if rcvhwm is not None else (LATEST_RCVHWM if latest_only else DEFAULT_RCVHWM))
        if self.rcvhwm < 1:
            raise ValueError(f"rcvhwm must be >= 1, got {rcvhwm}")
        if max_message_bytes is not None and (isinstance(max_message_bytes, bool) or int(max_message_bytes) < 1024):
            raise ValueError(f"max_message_bytes must be an integer >= 1024, got {max_message_bytes!r}")
        if isinstance(max_queue_bytes, bool) or int(max_queue_bytes) < 1:
            raise ValueError(f"max_queue_bytes must be a positive integer, got {max_queue_bytes!r}")
        self._fixed_limit = None if max_message_bytes is None else int(max_message_bytes)
        self.max_queue_bytes = int(max_queue_bytes)
        self.max_message_bytes = self._fixed_limit or DEFAULT_MAX_MESSAGE_BYTES  # the limit of the socket in use
        self._limit_stream: str | None = None  # the stream whose declared geometry gave that limit
        self._declared: tuple[str, tuple[int, int], str] | None = None  # (stream_id, shape, dtype) of the newest stream
        self._swap: _Swap | None = None
        self._backlog: collections.deque[tuple[int, list[bytes]]] = collections.deque()  # from a finished swap
        self._dedupe = False  # after a socket change without a common message: drop frames/heartbeats seen already
        self._watches: dict[zmq.Socket, HandshakeWatch] = {}  # each SUB socket's monitor (handshakes, drops)
        self.timeout_s = timeout_s
        self.heartbeat_timeout_s = float(heartbeat_timeout_s)
        self.reconnect = reconnect
        self.curve = curve
        self.stats = SubscriberStats()
        self.last_heartbeat: Heartbeat | None = None
        self.last_eos: EndOfStream | None = None
        self._tracker = SeqTracker()
        self._eos_seen: set[tuple[str, int, str]] = set()
        self._pending: collections.deque[Received] = collections.deque()
        self._ctx = context or zmq.Context.instance()
        self._sock: zmq.Socket | None = None
        self._closed = False
        self._last_rx = time.monotonic()  # reconnect schedule (reset by each reconnect)
        self.last_message_t: float | None = None  # time.monotonic() of the newest message of any kind
        self._open_socket()

    # -- socket lifecycle -------------------------------------------------

    def rcvhwm_for(self, max_message_bytes: int) -> int:
        """The RCVHWM used with a message limit: ``rcvhwm``, lowered so the queue fits ``max_queue_bytes``."""
        return max(1, min(self.rcvhwm, self.max_queue_bytes // max_message_bytes))

    def _new_socket(self, max_message_bytes: int) -> zmq.Socket:
        sock = self._ctx.socket(zmq.SUB)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVHWM, self.rcvhwm_for(max_message_bytes))
        sock.setsockopt(zmq.MAXMSGSIZE, max_message_bytes)
        for topic in dict.fromkeys((*self.topics, TOPIC_HEARTBEAT)):  # heartbeats always: liveness
            sock.setsockopt(zmq.SUBSCRIBE, topic)
        if self.curve is not None:
            self.curve.apply(sock)
        self._watches[sock] = HandshakeWatch(sock, curve=self.curve is not None)
        sock.connect(self.url)
        return sock

    def _close_socket(self, sock: zmq.Socket) -> None:
        watch = self._watches.pop(sock, None)
        if watch is not None:
            watch.close()
        sock.close(linger=0)

    def _disconnected(self, sock: zmq.Socket) -> bool:
        """Whether libzmq dropped ``sock``'s connection since the last call. After a protocol error (a message
        over ZMQ_MAXMSGSIZE) libzmq does not reconnect by itself."""
        watch = self._watches.get(sock)
        if watch is None or watch.take_disconnects() == 0:
            return False
        return watch.failure() is None  # a refused handshake is no dropped connection: keep the socket and its reason

    def _replace_dropped_socket(self) -> None:
        """The current socket lost its connection: keep what it had queued, then carry on with a new one
        (the pending swap's socket if there is one, else a new socket with the same limit)."""
        self.stats.disconnects += 1
        log.info("%s dropped the connection (a message over %d bytes?): reconnecting", self.url, self.max_message_bytes)
        while self._sock.poll(0, zmq.POLLIN):
            self._backlog.append((time.monotonic_ns(), self._sock.recv_multipart(zmq.NOBLOCK)))
        self._close_socket(self._sock)
        sw, self._swap = self._swap, None
        if sw is not None:
            self._sock = sw.sock
            self.max_message_bytes, self._limit_stream = sw.max_message_bytes, sw.stream_id
            self._backlog.extend(sw.backlog)
        else:
            self._sock = self._new_socket(self.max_message_bytes)
        self._dedupe = True

    def _open_socket(self) -> None:
        self.max_message_bytes = self._fixed_limit or DEFAULT_MAX_MESSAGE_BYTES
        self._limit_stream = None
        self._sock = self._new_socket(self.max_message_bytes)
        self._last_rx = time.monotonic()

    def _reconnect(self) -> None:
        log.info("no message from %s for %.1f s: reconnecting", self.url, self.heartbeat_timeout_s)
        self._close_sockets()
        self.stats.reconnects += 1
        self._open_socket()

    def _close_sockets(self) -> None:
        if self._swap is not None:
            self._close_socket(self._swap.sock)
            self._swap = None
        self._backlog.clear()
        self._dedupe = False
        if self._sock is not None:
            self._close_socket(self._sock)
            self._sock = None

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._close_sockets()

    # -- message limits (make-before-break socket swap) ---------------------

    def _want_limit(self, max_message_bytes: int, stream_id: str | None) -> None:
        """Move to a socket with this limit (no-op when fixed, already in force or being swapped to)."""
        if self._fixed_limit is not None or self._swap is not None:
            return
        if max_message_bytes == self.max_message_bytes:
            self._limit_stream = stream_id
            return
        log.debug("message limit for %s: %d -> %d bytes", self.url, self.max_message_bytes, max_message_bytes)
        self._swap = _Swap(self._new_socket(max_message_bytes), max_message_bytes, stream_id, time.monotonic())

    def _advance_swap(self) -> None:
        sw = self._swap
        while len(sw.backlog) < _SWAP_BACKLOG and sw.sock.poll(0, zmq.POLLIN):
            parts = sw.sock.recv_multipart(zmq.NOBLOCK)
            recv_t_ns = time.monotonic_ns()
            if sw.first is None:
                sw.first = _peek_frame(parts)
                if sw.first is None:
                    continue  # before its first frame the old socket delivers everything the new one has
            sw.position.setdefault(_identity(parts), len(sw.backlog))
            sw.backlog.append((recv_t_ns, parts))
        late = time.monotonic() - sw.started > _SWAP_TIMEOUT_S
        if sw.first is None:
            if late:  # no frame came through the new socket: keep the old one
                self._close_socket(sw.sock)
                self._swap = None
            return
        seen = sw.position.get(sw.old_last) if sw.old_last is not None else None
        if seen is None and not late and len(sw.backlog) < _SWAP_BACKLOG:
            return
        self._close_socket(self._sock)
        self._sock = sw.sock
        self.max_message_bytes, self._limit_stream = sw.max_message_bytes, sw.stream_id
        self._swap = None
        if seen is not None:  # continue right after the old socket's newest message
            for _ in range(seen + 1):
                sw.backlog.popleft()
        else:  # no common message: recognise what was delivered already by seq / heartbeat time
            self._dedupe = True
        self._backlog.extend(sw.backlog)

    def _readable(self, timeout_ms: int) -> bool:
        if self._disconnected(self._sock):
            self._replace_dropped_socket()
        if self._swap is not None and not self._backlog:  # switch only once the old socket's queue is read
            self._advance_swap()
        return bool(self._backlog) or bool(self._sock.poll(timeout_ms, zmq.POLLIN))

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def handshake_error(self) -> str | None:
        """Why the daemon refused this subscriber's handshake (CURVE key or mechanism), None if it did not."""
        watch = None if self._closed else self._watches.get(self._sock)
        return None if watch is None else watch.failure()

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- receiving --------------------------------------------------------

    def next(self, timeout_s: float | None | _Default = _DEFAULT) -> Received | None:
        """The next item, or ``None`` if nothing arrived within ``timeout_s`` (default: the constructor's)."""
        if self._closed:
            raise RuntimeError(f"subscriber of {self.url} is closed")
        timeout = self.timeout_s if isinstance(timeout_s, _Default) else timeout_s
        deadline = None if timeout is None else time.monotonic() + max(0.0, float(timeout))
        item = self._receive(deadline)
        if item is None:
            self.stats.timeouts += 1
        return item

    def recv(self, timeout_s: float | None | _Default = _DEFAULT) -> Received:
        """The next item; raise ``SubscriberTimeout`` if nothing arrived within ``timeout_s``."""
        item = self.next(timeout_s)
        if item is None:
            timeout = self.timeout_s if isinstance(timeout_s, _Default) else timeout_s
            raise SubscriberTimeout(f"nothing from {self.url} within {timeout} s ({self._status()})")
        return item

    def __iter__(self) -> Iterator[Received]:
        """Yield items until closed; raise ``SubscriberTimeout`` after ``timeout_s`` of silence."""
        while not self._closed:
            yield self.recv()

    def _status(self) -> str:
        s = self.stats
        return (f"heartbeats {s.heartbeats}, frames {s.frames}, malformed {s.malformed}, "
                f"disconnects {s.disconnects}, reconnects {s.reconnects}")

    def _receive(self, deadline: float | None) -> Received | None:
        while True:
            if self._pending:
                return self._pending.popleft()
            now = time.monotonic()
            wait_s = _MAX_POLL_MS / 1000
            if self._swap is not None:
                wait_s = 0.01  # keep the new socket's queue moving
            if deadline is not None:
                wait_s = min(wait_s, deadline - now)
            if self.reconnect:
                wait_s = min(wait_s, self.heartbeat_timeout_s - (now - self._last_rx))
            # Poll before deciding anything: what is already queued is never thrown away.
            if self._readable(max(0, int(wait_s * 1000 + 0.999))):
                item = self._read_one()
                if item is None:
                    continue
                if item.kind == "frame" and self.latest_only:
                    item = self._drain(item)
                if item.kind == "frame":
                    self.stats.returned_frames += 1
                return item
            now = time.monotonic()
            if self.reconnect and now - self._last_rx >= self.heartbeat_timeout_s:
                self._reconnect()
            if deadline is not None and now >= deadline:
                return None

    def _read_one(self) -> Received | None:
        """Read one available message; return an item of a returned kind, or None (absorbed/malformed)."""
        if self._backlog:  # queued by a socket that was replaced
            recv_t_ns, parts = self._backlog.popleft()
        else:
            parts = self._sock.recv_multipart(zmq.NOBLOCK)
            recv_t_ns = time.monotonic_ns()
        if self._swap is not None:
            self._swap.old_last = _identity(parts)
        self._last_rx = self.last_message_t = time.monotonic()
        try:
            msg = decode(parts)
            if not isinstance(msg, (Heartbeat, EndOfStream)):
                self._check_geometry(msg[0])
        except WireError as exc:  # never crash on garbage: decode checks every field
            self.stats.malformed += 1
            self.stats.last_error = str(exc)
            log.debug("skipping malformed message from %s: %s", self.url, exc)
            return None
        if isinstance(msg, (Heartbeat, EndOfStream)) and self._limit_stream not in (None, msg.stream_id):
            self._want_limit(DEFAULT_MAX_MESSAGE_BYTES, None)  # a new stream: its geometry is not known yet
        if isinstance(msg, Heartbeat):
            last = self.last_heartbeat
            if self._dedupe and last is not None and last.stream_id == msg.stream_id and msg.t_ns <= last.t_ns:
                return None  # right after a swap: the old socket delivered it already
            self.stats.heartbeats += 1
            self.last_heartbeat = msg
            return Received("heartbeat", recv_t_ns, heartbeat=msg) if "heartbeat" in self._kinds else None
        if isinstance(msg, EndOfStream):
            key = (msg.stream_id, msg.last_seq, msg.reason)
            if key in self._eos_seen:
                return None
            self._eos_seen.add(key)
            self.stats.eos += 1
            self.last_eos = msg
            lost = self._tracker.trailing_loss(msg.stream_id, msg.last_seq)
            if lost:
                self.stats.gaps += 1
                self.stats.lost_frames += lost
            return Received("eos", recv_t_ns, eos=msg) if "eos" in self._kinds else None
        header, image = msg
        tracker = self._tracker
        if self._dedupe:
            if tracker.stream_id == header.stream_id and tracker.last_seq is not None and header.seq <= tracker.last_seq:
                return None  # right after a socket change: delivered already
            self._dedupe = False
        lost, new_stream = tracker.observe(header.stream_id, header.seq)
        s = self.stats
        s.frames += 1
        if new_stream and s.frames > 1:
            s.stream_restarts += 1
        if lost:
            s.gaps += 1
            s.lost_frames += lost
        if header.discontinuity:
            s.discontinuities += 1
        s.ring_overrun_planes = header.ring_overrun_planes
        s.worker_skipped_windows = header.worker_skipped_windows
        if self._limit_stream != header.stream_id:
            self._want_limit(message_limit_bytes(header.shape, header.dtype), header.stream_id)
        if "frame" not in self._kinds:
            return None
        return Received("frame", recv_t_ns, header=header, image=image, gap_frames=lost, new_stream=new_stream)

    def _check_geometry(self, header: FrameHeader) -> None:
        """A stream keeps the shape and dtype of its first frame; a new ``stream_id`` declares its own."""
        declared = self._declared
        if declared is None or declared[0] != header.stream_id:
            self._declared = (header.stream_id, header.shape, header.dtype)
        elif (header.shape, header.dtype) != declared[1:]:
            raise WireError(f"frame seq {header.seq} is {header.dtype} {header.shape} but stream "
                            f"{header.stream_id!r} declared {declared[2]} {declared[1]}")

    def _drain(self, newest: Received) -> Received:
        """Read everything already queued and return the newest frame (latest-only mode)."""
        skipped = gap = 0
        new_stream = newest.new_stream
        heartbeat: Received | None = None
        read_any = False
        give_up = time.monotonic() + _MAX_DRAIN_S  # a publisher faster than us must not starve the caller
        while time.monotonic() < give_up:
            # After a backlog, wait 1 ms before calling the queue empty: libzmq refills the
            # receive pipe from the TCP buffer asynchronously once the reader has made room.
            if not self._readable(1 if read_any else 0):
                break
            read_any = True
            item = self._read_one()
            if item is None:
                continue
            if item.kind == "heartbeat":
                heartbeat = item
            elif item.kind == "eos":
                self._pending.append(item)
                break
            else:
                skipped += 1
                gap += newest.gap_frames
                new_stream = new_stream or item.new_stream
                newest = item
        if heartbeat is not None:
            self._pending.appendleft(heartbeat)
        if skipped:
            self.stats.skipped_latest += skipped
            newest = Received(
                "frame",
                newest.recv_t_ns,
                header=newest.header,
                image=newest.image,
                gap_frames=gap + newest.gap_frames,
                skipped_frames=skipped,
                new_stream=new_stream,
            )
        return newest
