"""The frame publisher against real SUB sockets on loopback: subscription counts, live drops, lossless waits."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest
import zmq

from edge.live.publisher import Publisher
from edge.protocol.wire import TOPIC_FRAME, TOPIC_HEARTBEAT, FrameHeader, decode, encode_frame

URL = "tcp://127.0.0.1:*"
BIG = (512, 512)  # 1 MB float32 frames: a few fill the loopback TCP buffers


@pytest.fixture
def ctx():
    context = zmq.Context()
    yield context
    context.destroy(linger=0)


def header(seq: int, shape: tuple[int, int]) -> FrameHeader:
    return FrameHeader(
        stream_id="test", seq=seq, key_plane=100 + seq, plane_start=seq, plane_stop=200 + seq, shape=shape,
        dtype="float32", method="tfp", backend="numpy", weights_id="none", capture_t_ns=1, dequeue_t_ns=2,
        infer_start_t_ns=3, infer_end_t_ns=4, publish_t_ns=5, rate_hz=40_000.0)


def frame(seq: int, shape: tuple[int, int] = BIG) -> list:
    return encode_frame(header(seq, shape), np.full(shape, seq, dtype=np.float32))


def subscriber(ctx: zmq.Context, pub: Publisher, topic: bytes = TOPIC_FRAME, *, small: bool = False) -> zmq.Socket:
    """A SUB socket on the publisher; ``small``: a one-message queue and a 64 KB TCP receive buffer."""
    sock = ctx.socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    if small:
        sock.setsockopt(zmq.RCVHWM, 1)
        sock.setsockopt(zmq.RCVBUF, 64 * 1024)
    sock.setsockopt(zmq.SUBSCRIBE, topic)
    sock.connect(pub.endpoint)
    return sock


def wait_counts(pub: Publisher, frame_subscribers: int, subscriptions: int, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pub.poll_subscriptions()
        if (pub.frame_subscribers, pub.subscriptions) == (frame_subscribers, subscriptions):
            return
        time.sleep(0.005)
    raise AssertionError(f"expected {frame_subscribers} frame subscribers and {subscriptions} subscriptions, "
                         f"have {pub.frame_subscribers} and {pub.subscriptions}")


def receive_all(sock: zmq.Socket, expected: int | None = None, quiet_s: float = 0.5) -> list[int]:
    """The ``seq`` of every frame that arrives until none has for ``quiet_s`` (or, when ``expected``
    frames are due, for 10 s before they are all in); checks each payload."""
    seqs: list[int] = []
    while sock.poll(int((10.0 if expected is not None and len(seqs) < expected else quiet_s) * 1000)):
        head, image = decode(sock.recv_multipart())
        assert (image == head.seq).all()
        seqs.append(head.seq)
    return seqs


@contextmanager
def slow_subscriber(ctx: zmq.Context, *, lossless: bool) -> Iterator[tuple[Publisher, zmq.Socket]]:
    """A publisher with a one-frame queue and one frame subscriber with small buffers, both connected."""
    pub = Publisher(URL, lossless=lossless, sndhwm=1, context=ctx)
    sub = subscriber(ctx, pub, small=True)
    try:
        wait_counts(pub, 1, 1)
        yield pub, sub
    finally:
        sub.close()
        pub.close()


def test_subscriptions_are_counted_and_frames_arrive(ctx):
    pub = Publisher(URL, lossless=False, context=ctx)
    try:
        assert pub.endpoint.startswith("tcp://127.0.0.1:") and not pub.endpoint.endswith("*")
        frames_sub = subscriber(ctx, pub, TOPIC_FRAME)
        wait_counts(pub, 1, 1)
        beats = subscriber(ctx, pub, TOPIC_HEARTBEAT)  # a subscription, but not to frames
        wait_counts(pub, 1, 2)
        everything = subscriber(ctx, pub, b"")  # the empty prefix matches frames too
        wait_counts(pub, 2, 3)

        assert pub.send(frame(7, (4, 6)))
        assert frames_sub.poll(5000) and everything.poll(5000)
        for sock in (frames_sub, everything):
            head, image = decode(sock.recv_multipart())
            assert head == header(7, (4, 6)) and image.shape == (4, 6) and (image == 7).all()
        assert not beats.poll(200)  # filtered on the publisher's side
        assert pub.sent == 1

        frames_sub.setsockopt(zmq.UNSUBSCRIBE, TOPIC_FRAME)
        wait_counts(pub, 1, 2)
        everything.close()  # a subscriber that goes away is unsubscribed too
        wait_counts(pub, 0, 1)
        beats.close()
        frames_sub.close()
    finally:
        pub.close()


def test_lossless_send_waits_for_a_slow_subscriber_and_loses_nothing(ctx):
    with slow_subscriber(ctx, lossless=True) as (pub, sub):
        received: list[int] = []

        def idle() -> None:  # the subscriber reads only while the publisher waits: it is the slow one
            if sub.poll(0):
                received.append(decode(sub.recv_multipart())[0].seq)

        n = 24
        for seq in range(n):
            assert pub.send(frame(seq), idle=idle, max_wait_s=30.0), f"frame {seq} not queued"
        received += receive_all(sub, expected=n - len(received))
        assert received == list(range(n))
        assert pub.sent == n and pub.send_waits > 0 and pub.wait_s > 0


def test_lossless_send_gives_up_after_max_wait(ctx):
    with slow_subscriber(ctx, lossless=True) as (pub, sub):  # never reads until the end
        for seq in range(100):
            waits = pub.send_waits
            started = time.monotonic()
            if not pub.send(frame(seq), max_wait_s=0.2):
                waited_s = time.monotonic() - started
                break
        else:
            pytest.fail("100 MB were queued for a subscriber that reads nothing")
        assert waited_s >= 0.2 and pub.send_waits == waits + 1 and pub.sent == seq
        stop_calls = []
        started = time.monotonic()
        assert not pub.send(frame(seq), should_stop=lambda: stop_calls.append(1) or True, max_wait_s=30.0)
        assert time.monotonic() - started < 5.0 and stop_calls == [1] and pub.send_waits == waits + 2
        # Every frame queued before giving up arrives, in order; the refused ones never do.
        assert receive_all(sub, expected=seq) == list(range(seq))


def test_live_send_never_waits_and_a_full_subscriber_loses_frames(ctx):
    with slow_subscriber(ctx, lossless=False) as (pub, sub):  # never reads until the end
        n = 60
        assert all(pub.send(frame(seq)) for seq in range(n))
        assert pub.sent == n and pub.send_waits == 0 and pub.wait_s == 0.0
        seqs = receive_all(sub)
        assert 0 < len(seqs) < n, "the subscriber's full queue must have dropped frames, not delayed the sender"
        assert seqs == sorted(set(seqs))  # what arrives is in order, without repeats
