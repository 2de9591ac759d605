"""Prometheus metrics (``edge.live.metrics``, ``spike-edge run --metrics``): the address rule, the histogram
folding against prometheus_client's own ``Histogram``, and a real daemon scraped twice over HTTP on loopback."""

from __future__ import annotations

import subprocess
import time
import urllib.request

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from edge.cli.processes import EDGE, free_port, loopback_urls
from edge.live.config import DaemonConfig, parse_metrics
from edge.live.metrics import BUCKETS_S, STAGES, DaemonMetrics, StageHistograms
from edge.protocol.endpoints import HttpAddress, parse_http_address
from firmware_io.contract import Geometry
from firmware_io.dat import write_dat
from host.subscriber import Subscriber


# -- the address ------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, host, port, loopback", [
    ("127.0.0.1:9464", "127.0.0.1", 9464, True), ("9464", "127.0.0.1", 9464, True),
    ("localhost:0", "localhost", 0, True), ("[::1]:9464", "::1", 9464, True), ("127.3.2.1:1", "127.3.2.1", 1, True),
    ("0.0.0.0:9464", "0.0.0.0", 9464, False), ("10.1.2.3:80", "10.1.2.3", 80, False),
    ("[::]:9464", "::", 9464, False), ("camera-host:9464", "camera-host", 9464, False),
])
def test_http_addresses_parse_and_know_whether_they_are_loopback(text, host, port, loopback):
    address = parse_http_address(text, "metrics")
    assert address == HttpAddress(host, port) and address.loopback is loopback
    assert parse_http_address(str(address), "metrics") == address  # str() round-trips, IPv6 in brackets


@pytest.mark.parametrize("value", [":9464", "host:", "host:port", "1.2.3.4:70000", "::1:9464", "[::1]9464", "", None,
                                   "a b:1", True])
def test_bad_metrics_addresses_are_refused_quoting_them(value):
    with pytest.raises(ValueError) as error:
        parse_metrics(value)
    assert repr(value) in str(error.value)


def test_a_non_loopback_metrics_address_needs_insecure():
    exposed = {"replay": "x.dat", "metrics": parse_metrics("0.0.0.0:9464")}
    with pytest.raises(ValueError, match="refusing to serve --metrics 0.0.0.0:9464 without --insecure"):
        DaemonConfig.from_options(exposed)
    assert DaemonConfig.from_options({**exposed, "insecure": True}).metrics == HttpAddress("0.0.0.0", 9464)
    assert DaemonConfig.from_options({"replay": "x.dat", "metrics": parse_metrics("9464")}).metrics.loopback
    assert DaemonConfig.from_options({"replay": "x.dat"}).metrics is None


# -- the histograms ---------------------------------------------------------------------------------
def test_folded_histograms_equal_prometheus_clients_own():
    """Durations on, between and beyond the bounds land where ``Histogram.observe`` puts them."""
    rng = np.random.default_rng(3)
    seconds = [*BUCKETS_S, 0.0, 1e-7, 11.0, *rng.exponential(0.01, 200)]
    stamps = []
    for s in seconds:  # capture at 1 s; each stage takes ``s`` except inference (2 s) and the last (0)
        t0 = 1_000_000_000
        t1 = t0 + int(round(s * 1e9))
        stamps.append((t0, t1, t1, t1 + 2_000_000_000, t1 + 2_000_000_000))
    mine = StageHistograms()
    mine.fold(stamps[:50])
    mine.fold(stamps[50:])
    registry = CollectorRegistry()
    official = Histogram("spike_edge_stage_latency_seconds", "x", ["stage"], buckets=BUCKETS_S, registry=registry)
    for t in stamps:
        for stage, start, stop in STAGES:
            official.labels(stage).observe((t[stop] - t[start]) / 1e9)
    want = {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(generate_latest(registry).decode()) for s in family.samples
            if not s.name.endswith("_created")}
    got = {(s.name, tuple(sorted(s.labels.items()))): s.value for s in mine.families().samples}
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=1e-9, abs=1e-9), key


def test_metrics_before_the_first_update_and_after():
    metrics = DaemonMetrics(ring_capacity_planes=123, states=["starting", "running"])
    names = {family.name for family in metrics.collect()}
    assert names == {"spike_edge_ring_capacity_planes"}
    metrics.observe(0, 1_000, 2_000, 3_000, 4_000)
    metrics.update({"state": "running", "frames": 7, "fps": 2.5, "ring_fill_planes": 246}, {"method": "tfp"})
    families = {family.name: family for family in metrics.collect()}
    assert families["spike_edge_frames"].samples[0].value == 7
    assert families["spike_edge_ring_fill_ratio"].samples[0].value == 1.0  # capped
    assert {s.labels["spike_edge_state"]: s.value for s in families["spike_edge_state"].samples} == {
        "starting": 0, "running": 1}
    counts = {s.labels["stage"]: s.value for s in families["spike_edge_stage_latency_seconds"].samples
              if s.name.endswith("_count")}
    assert counts == {stage: 1 for stage, _, _ in STAGES}


# -- a real daemon ----------------------------------------------------------------------------------
def scrape(url: str) -> dict[str, float]:
    """``name{label=value,...}`` -> value of every sample at ``url``."""
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return out


def scrape_until(url: str, done, timeout_s: float, log) -> dict[str, float]:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            got = scrape(url)
            if done(got):
                return got
        except OSError:
            got = None
        if time.monotonic() > deadline:
            pytest.fail(f"metrics at {url} never matched; last scrape {got}; log:\n{log()}")
        time.sleep(0.2)


def rect_clip(path, geometry=Geometry(24, 32), n_planes=400):
    rng = np.random.default_rng(0)
    return write_dat(path, rng.random((n_planes, *geometry.shape)) < 0.2)


def test_metrics_are_scraped_twice_and_the_counters_advance(start_daemon, tmp_path):
    port = free_port()
    path = rect_clip(tmp_path / "clip.dat")
    d = start_daemon(["--replay", str(path), "--realtime", "--loop", "--rate-hz", "4000", "--height", "24",
                      "--width", "32", "--ring-planes", "800", "--metrics", f"127.0.0.1:{port}"])
    url = f"http://127.0.0.1:{port}/metrics"
    first = scrape_until(url, lambda m: m.get("spike_edge_frames_total", 0) > 0, 30, d.text)
    with Subscriber(d.pub, topics=("frame",), max_message_bytes=1 << 20) as sub:  # fixed limit: one socket
        assert sub.next(10) is not None, d.text()
        d.request("stats")
        d.request("describe")
        second = scrape_until(url, lambda m: m["spike_edge_frames_total"] > first["spike_edge_frames_total"] + 20
                              and m.get("spike_edge_subscribers") == 1, 20, d.text)
    for name in ("spike_edge_frames_total", "spike_edge_windows_total", "spike_edge_planes_captured_total",
                 "spike_edge_control_requests_total",
                 "spike_edge_stage_latency_seconds_count{stage=capture_to_publish}",
                 "spike_edge_stage_latency_seconds_count{stage=inference}",
                 "spike_edge_stage_latency_seconds_bucket{le=+Inf,stage=capture_to_dequeue}"):
        assert second[name] > first[name], (name, first[name], second[name])
    assert second["spike_edge_control_requests_total"] >= first["spike_edge_control_requests_total"] + 2
    assert second["spike_edge_stage_latency_seconds_count{stage=capture_to_publish}"] <= second["spike_edge_frames_total"]
    assert second["spike_edge_stage_latency_seconds_sum{stage=inference}"] > 0
    assert 0 < second["spike_edge_frames_per_second"] <= 150  # 4,000 Hz / hop 40 = 100 at most
    assert second["spike_edge_ring_capacity_planes"] == 800
    assert 0 < second["spike_edge_ring_fill_planes"] <= 800
    assert second["spike_edge_state{spike_edge_state=running}"] == 1
    assert second["spike_edge_state{spike_edge_state=starting}"] == 0
    assert second["spike_edge_capture_alive"] == 1 and second["spike_edge_snapshot_age_seconds"] < 5
    for name in ("ring_overrun_planes", "worker_skipped_windows", "source_gap_planes", "capture_gap_planes",
                 "camera_reconnects", "discontinuities", "control_errors"):
        assert f"spike_edge_{name}_total" in second
    info = next(k for k in second if k.startswith("spike_edge_stream_info"))
    assert "method=tfp" in info and "source=replay" in info and "hop=40" in info
    assert second["process_resident_memory_bytes"] > 0
    d.terminate(within_s=2.0)
    assert "metrics on http://127.0.0.1" in d.text()


def test_an_exposed_metrics_address_is_refused_without_insecure_and_warned_with_it(start_daemon, tmp_path):
    path = rect_clip(tmp_path / "clip.dat")
    pub, ctl = loopback_urls()
    args = ["run", "--replay", str(path), "--realtime", "--loop", "--rate-hz", "4000", "--height", "24", "--width", "32",
            "--bind", pub, "--control", ctl]
    port = free_port()
    refused = subprocess.run([*EDGE, *args, "--metrics", f"0.0.0.0:{port}"], capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "without --insecure" in refused.stderr, refused.stderr
    d = start_daemon(["--replay", str(path), "--realtime", "--loop", "--rate-hz", "4000", "--height", "24",
                      "--width", "32", "--metrics", f"0.0.0.0:{port}", "--insecure"])
    scrape_until(f"http://127.0.0.1:{port}/metrics", lambda m: "spike_edge_frames_total" in m, 30, d.text)
    assert "not loopback and have no authentication" in d.text()
    d.terminate(within_s=2.0)


def test_a_metrics_port_in_use_exits_5(tmp_path):
    import socket

    path = rect_clip(tmp_path / "clip.dat")
    pub, ctl = loopback_urls()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run([*EDGE, "run", "--replay", str(path), "--height", "24", "--width", "32",
                                 "--bind", pub, "--control", ctl, "--metrics", f"127.0.0.1:{port}"],
                                capture_output=True, text=True, timeout=60)
    assert result.returncode == 5 and f"cannot serve metrics on 127.0.0.1:{port}" in result.stderr, result.stderr
