"""The frame publisher: an XPUB socket the daemon binds, sending ``edge.protocol.wire`` messages.

When messages can be lost (documented for users in ``docs/wire-format.md``):

- **Live modes** (camera, simulator, real-time replay; ``lossless=False``): each subscriber has a
  bounded queue (``SNDHWM`` on our side plus its own ``RCVHWM`` and the TCP buffers). A
  subscriber that stops reading fills its queue and then *its* frames are dropped; the daemon
  never waits and other subscribers are unaffected. The subscriber sees the drops as gaps in
  ``seq``.
- **Deterministic replay** (``lossless=True``: ``--policy all``, not real-time): ``XPUB_NODROP``
  makes a full queue refuse the message (``EAGAIN``) instead of dropping it; the publisher then
  retries until the slowest subscriber has room. The stream is flow-controlled by the
  subscribers, so nothing is lost, and a stalled subscriber stalls the replay (by design).
  With no subscriber at all, messages go nowhere (use ``--wait-subscribers``).

XPUB rather than PUB so the daemon sees subscriptions: ``XPUB_VERBOSER`` passes every
subscribe and unsubscribe up, and a subscription whose prefix matches ``frame`` counts as one
frame subscriber (``--wait-subscribers N``, stats). ``LINGER`` is 0: closing drops what is
queued, except after a natural end-of-stream in lossless mode, where ``close(linger_s)`` gives
the queue a bounded time to flush.

Exposure (``edge.live.sockets``): with CURVE (``curve``) only listed clients complete the handshake,
so only they receive anything or count as subscribers; every peer must finish its handshake
within ``HANDSHAKE_TIMEOUT_MS``, and a subscription message larger than ``MAX_SUBSCRIPTION_BYTES``
(a topic prefix is a few bytes) disconnects its sender.
"""

from __future__ import annotations

import logging
import time
from typing import Callable

import zmq

from edge.live.security import CurveServer
from edge.live.sockets import PUBLISHER_IO_THREADS, bind_socket
from edge.protocol.endpoints import DEFAULT_PUB_URL
from edge.protocol.wire import TOPIC_FRAME

log = logging.getLogger(__name__)

DEFAULT_SNDHWM = 32  # frames per subscriber queued on our side (~13 MB at 250x400 float32)
RETRY_SLEEP_S = 0.0002
MAX_SUBSCRIPTION_BYTES = 4096  # a subscription is a flag byte and a topic prefix; the CURVE handshake needs ~300


class Publisher:
    def __init__(self, url: str = DEFAULT_PUB_URL, *, lossless: bool, sndhwm: int = DEFAULT_SNDHWM,
                 context: zmq.Context | None = None, curve: CurveServer | None = None) -> None:
        self.context = context or zmq.Context.instance()
        self.lossless = lossless
        self.sock = self.context.socket(zmq.XPUB)
        self.sock.setsockopt(zmq.SNDHWM, sndhwm)
        self.sock.setsockopt(zmq.XPUB_VERBOSER, 1)
        if lossless:
            self.sock.setsockopt(zmq.XPUB_NODROP, 1)
        self.endpoint = bind_socket(self.sock, url, "publisher", max_message_bytes=MAX_SUBSCRIPTION_BYTES,
                                    io_threads=PUBLISHER_IO_THREADS, curve=curve)
        self.frame_subscribers = 0
        self.subscriptions = 0
        self.sent = 0
        self.send_waits = 0  # lossless mode: times a send had to wait for a slow subscriber
        self.wait_s = 0.0

    def poll_subscriptions(self) -> None:
        """Read pending (un)subscription messages and update the counts."""
        while True:
            try:
                msg = self.sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            if not msg:
                continue
            delta = 1 if msg[0] == 1 else -1 if msg[0] == 0 else 0
            self.subscriptions += delta
            if TOPIC_FRAME.startswith(msg[1:]):
                self.frame_subscribers = max(0, self.frame_subscribers + delta)

    def send(self, parts: list, *, should_stop: Callable[[], bool] = lambda: False,
             idle: Callable[[], None] | None = None, max_wait_s: float | None = None) -> bool:
        """Send one multipart message. Live: never waits. Lossless: retries while the HWM is reached,
        calling ``idle`` (serve control requests) between tries; gives up when ``should_stop()`` or
        after ``max_wait_s``. Returns whether the message was queued."""
        if not self.lossless:
            self.sock.send_multipart(parts, flags=zmq.NOBLOCK, copy=False)
            self.sent += 1
            return True
        started = None
        while True:
            try:
                self.sock.send_multipart(parts, flags=zmq.NOBLOCK, copy=False)
                self.sent += 1
                if started is not None:
                    self.wait_s += time.monotonic() - started
                return True
            except zmq.Again:
                if started is None:
                    started = time.monotonic()
                    self.send_waits += 1
                if should_stop() or (max_wait_s is not None and time.monotonic() - started > max_wait_s):
                    self.wait_s += time.monotonic() - started
                    return False
                self.poll_subscriptions()
                if idle is not None:
                    idle()
                time.sleep(RETRY_SLEEP_S)

    def close(self, linger_s: float = 0.0) -> None:
        if not self.sock.closed:
            self.sock.close(linger=int(linger_s * 1000))
