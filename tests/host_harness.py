"""Helpers for the host tests: a small wire-speaking publisher on loopback, frames and headers to send,
and ``spike-host`` as a subprocess.

``Pub`` is an XPUB socket speaking ``edge.protocol.wire`` (it waits for the subscription to arrive
instead of sleeping); ``publishing`` runs one in a thread. Every socket has LINGER 0, every wait a
deadline.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import zmq

from edge.protocol.wire import (
    TOPIC_EOS,
    TOPIC_FRAME,
    EndOfStream,
    FrameHeader,
    Heartbeat,
    encode_eos,
    encode_frame,
    encode_heartbeat,
)
from host.subscriber import Received, Subscriber

REPO = Path(__file__).resolve().parents[1]
SHAPE = (16, 24)


def image_for(seq: int, shape=SHAPE, dtype="float32") -> np.ndarray:
    return ((np.arange(shape[0] * shape[1]).reshape(shape) * 0.5 + seq) % 251).astype(dtype)


def make_header(seq: int, *, shape=SHAPE, dtype="float32", stream_id="s1", **kw) -> FrameHeader:
    now = time.monotonic_ns()
    fields = dict(
        stream_id=stream_id, seq=seq, key_plane=100 + seq * 10, plane_start=90 + seq * 10, plane_stop=101 + seq * 10,
        shape=shape, dtype=dtype, method="tfp", backend="numpy", weights_id="", capture_t_ns=now - 4_000_000,
        dequeue_t_ns=now - 3_000_000, infer_start_t_ns=now - 2_500_000, infer_end_t_ns=now - 500_000,
        publish_t_ns=now, rate_hz=20000.0,
    )
    fields.update(kw)
    return FrameHeader(**fields)


class Pub:
    """A minimal wire-speaking publisher (XPUB, so it can wait for subscribers)."""

    def __init__(self, port: int | None = None) -> None:
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.XPUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.XPUB_VERBOSE, 1)
        self.sock.setsockopt(zmq.SNDHWM, 10000)
        if port is None:
            port = self.sock.bind_to_random_port("tcp://127.0.0.1")
        else:
            self.sock.bind(f"tcp://127.0.0.1:{port}")
        self.port = port
        self.url = f"tcp://127.0.0.1:{port}"
        self.subscribed: set[bytes] = set()
        self.sent_frames = 0

    def wait_subscribed(self, topics=(TOPIC_FRAME,), timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not set(topics) <= self.subscribed:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no subscription for {topics} within {timeout_s} s (have {self.subscribed})")
            if self.sock.poll(int(left * 1000) + 1):
                msg = self.sock.recv()
                if msg[:1] == b"\x01":
                    self.subscribed.add(msg[1:])

    def frame(self, seq: int, **kw) -> np.ndarray:
        header = make_header(seq, **kw)
        image = image_for(seq, header.shape, header.dtype)
        self.sock.send_multipart(encode_frame(header, image))
        self.sent_frames += 1
        return image

    def heartbeat(self, last_seq: int = -1, stream_id: str = "s1") -> None:
        self.sock.send_multipart(encode_heartbeat(Heartbeat(stream_id, time.monotonic_ns(), last_seq, {"fps": 1.0})))

    def eos(self, last_seq: int, frames: int, stream_id: str = "s1", repeats: int = 1) -> None:
        for _ in range(repeats):
            self.sock.send_multipart(encode_eos(EndOfStream(stream_id, time.monotonic_ns(), last_seq, frames, "end")))

    def raw(self, parts: list[bytes]) -> None:
        self.sock.send_multipart(parts)

    def close(self) -> None:
        self.sock.close(linger=0)
        self.ctx.term()


@contextmanager
def publishing(seqs, *, wait_topics=(TOPIC_FRAME, TOPIC_EOS), period_s=0.002, eos=True, until_stopped=False,
               shape=SHAPE, inject=None):
    """A publisher thread: waits for a subscriber, sends frames (and heartbeats), then end-of-stream x3.

    ``inject``: ``{seq: [parts, ...]}``, raw multipart messages sent right before frame ``seq``.
    """
    pub = Pub()
    stop = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            pub.wait_subscribed(wait_topics, timeout_s=20)
            pub.heartbeat()
            seq, t_hb = 0, time.monotonic()
            for seq in seqs:
                if stop.is_set():
                    return
                for parts in (inject or {}).get(seq, ()):
                    pub.raw(parts)
                pub.frame(seq, shape=shape)
                if time.monotonic() - t_hb > 0.2:
                    pub.heartbeat(seq)
                    t_hb = time.monotonic()
                time.sleep(period_s)
            if eos:
                for _ in range(3):
                    pub.eos(last_seq=seq, frames=len(seqs))
                    time.sleep(0.03)
            while until_stopped and not stop.wait(0.2):
                pub.heartbeat(seq)
        except BaseException as exc:  # reported by the test
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield pub
    finally:
        stop.set()
        thread.join(10)
        pub.close()
    assert not errors, errors


def spike_host(*args: str, timeout_s: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "host", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout_s
    )


def wait_frame(sub: Subscriber, timeout_s: float = 5.0) -> Received:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        item = sub.next(deadline - time.monotonic())
        if item is not None and item.kind == "frame":
            return item
    raise AssertionError("no frame arrived")
