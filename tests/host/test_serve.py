"""``spike-host serve`` (``host.serve``): the live web viewer against a real daemon, over HTTP, its WebSocket, and
in a real headless browser (Debian's chromium driven by Playwright; skipped, saying why, where either is missing).

The daemon replays, in real time and looped, a recording of a known scene: a bright rectangle on the left
of a dark field. The page must show that rectangle where it is, and its frame counter must advance.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from daemon_harness import Daemon
from edge.cli.processes import HOST, free_port
from edge.protocol.endpoints import HttpAddress
from firmware_io.dat import write_dat
from host.serve import Exposure, default_control_url

HEIGHT, WIDTH = 60, 80
BRIGHT_ROWS, BRIGHT_COLS = (10, 50), (6, 34)  # the rectangle, on the left
CHROMIUM_ENV = "SPIKE_EDGE_CHROMIUM"


def write_scene(path: Path, n_planes: int = 400) -> Path:
    """A dark field (2 % firing) with a bright rectangle (60 %) on its left."""
    rng = np.random.default_rng(0)
    p = np.full((HEIGHT, WIDTH), 0.02)
    p[slice(*BRIGHT_ROWS), slice(*BRIGHT_COLS)] = 0.6
    return write_dat(path, rng.random((n_planes, HEIGHT, WIDTH)) < p)


def regions(grey: np.ndarray) -> tuple[float, float]:
    """Mean grey level inside the rectangle and over the right side, at ``grey``'s own scale."""
    h, w = grey.shape
    inside = grey[int(h * 15 / HEIGHT):int(h * 45 / HEIGHT), int(w * 10 / WIDTH):int(w * 30 / WIDTH)]
    right = grey[int(h * 5 / HEIGHT):int(h * 55 / HEIGHT), int(w * 45 / WIDTH):int(w * 75 / WIDTH)]
    return float(inside.mean()), float(right.mean())


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def wait_until(check, timeout_s: float, what: str, log=lambda: ""):
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what} within {timeout_s} s; log:\n{log()}")
        time.sleep(0.1)


class Viewer:
    """``spike-host serve`` as a subprocess, its output in a log file."""

    def __init__(self, args: list[str], folder: Path) -> None:
        self.log = folder / "serve.log"
        self._log_f = open(self.log, "wb")
        self.proc = subprocess.Popen([*HOST, "serve", *args], stdout=self._log_f, stderr=subprocess.STDOUT)

    def text(self) -> str:
        self._log_f.flush()
        return self.log.read_text(errors="replace")

    def url(self, timeout_s: float = 30) -> str:
        line = wait_until(lambda: next((x for x in self.text().splitlines() if x.startswith("viewer on ")), None)
                          or self.proc.poll() is not None, timeout_s, "the viewer did not start", self.text)
        assert self.proc.poll() is None, self.text()
        return line.split()[2].rstrip("/")

    def close(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                self._log_f.close()
                return None
        self._log_f.close()
        return self.proc.returncode


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A daemon streaming the scene live (100 frames/s) and a viewer of it: ``(daemon, viewer, base URL)``."""
    folder = tmp_path_factory.mktemp("serve")
    scene = write_scene(folder / "scene.dat")
    daemon = Daemon(["--replay", str(scene), "--realtime", "--loop", "--rate-hz", "4000", "--height", str(HEIGHT),
                     "--width", str(WIDTH), "--ring-planes", "800"], folder)
    viewer = Viewer([daemon.pub, "--control", daemon.ctl, "--http", f"127.0.0.1:{free_port()}"], folder)
    try:
        base = viewer.url()
        wait_until(lambda: get_json(base + "/api/stats").get("seq") is not None, 30, "no frame reached the viewer",
                   lambda: daemon.text() + viewer.text())
        yield daemon, viewer, base
    finally:
        code = viewer.close()
        daemon.close()
    assert code == 0, viewer.text()


# -- without a browser --------------------------------------------------------------------------------
def test_stats_and_describe_are_served_and_advance(served):
    daemon, viewer, base = served
    first = get_json(base + "/api/stats")
    second = wait_until(lambda: (s := get_json(base + "/api/stats"))["seq"] > first["seq"] + 20 and s, 10,
                        "the frame counter did not advance", viewer.text)
    assert second["connected"] and 0 < second["fps"] <= 150  # 4,000 Hz / hop 40 = 100 frames/s at most
    assert second["method"] == "tfp" and second["shape"] == [HEIGHT, WIDTH]
    assert second["latency"]["capture_to_receive"]["p50_ms"] > 0
    assert set(second["drops"]) >= {"ring_overrun_planes", "worker_skipped_windows", "discontinuities", "gaps",
                                    "lost_frames"}
    assert second["daemon"]["state"] == "running"
    describe = wait_until(lambda: (d := get_json(base + "/api/describe")).get("ok") and d, 10, "no describe",
                          viewer.text)
    assert describe["method"] == "tfp" and describe["geometry"] == [HEIGHT, WIDTH]
    assert describe["control"] == daemon.ctl
    with urllib.request.urlopen(base + "/frame.jpg", timeout=5) as response:
        assert response.headers["Content-Type"] == "image/jpeg" and int(response.headers["X-Seq"]) >= 0
        inside, right = regions(np.asarray(Image.open(io.BytesIO(response.read())).convert("L"), dtype=float))
    assert inside > 150 and right < 60, (inside, right)
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(base + "/frame.jpg?stops=99", timeout=5)
    assert error.value.code == 400


def test_the_websocket_pushes_the_scene_and_brightness_changes_it(served):
    from aiohttp import ClientSession, WSMsgType

    daemon, viewer, base = served

    async def frames(ws, n: int) -> list[tuple[dict, np.ndarray]]:
        out, meta = [], None
        while len(out) < n:
            msg = await asyncio.wait_for(ws.receive(), 10)
            if msg.type is WSMsgType.TEXT:
                data = json.loads(msg.data)
                meta = data if data["type"] == "frame" else meta
                kinds.add(data["type"])
            elif msg.type is WSMsgType.BINARY:
                out.append((meta, np.asarray(Image.open(io.BytesIO(msg.data)).convert("L"), dtype=float)))
            else:
                pytest.fail(f"websocket closed: {msg}; log:\n{viewer.text()}")
        return out

    async def session():
        async with ClientSession() as http, http.ws_connect(base.replace("http", "ws") + "/ws") as ws:
            before = await frames(ws, 5)
            await ws.send_str(json.dumps({"stops": -4, "auto": True}))
            await frames(ws, 3)  # settings apply from the next frame on
            after = await frames(ws, 3)
            await ws.send_str(json.dumps({"stops": "bright"}))
            while True:
                msg = await asyncio.wait_for(ws.receive(), 10)
                if msg.type is WSMsgType.TEXT and json.loads(msg.data)["type"] == "error":
                    return before, after, json.loads(msg.data)

    kinds: set[str] = set()
    before, after, error = asyncio.run(session())
    assert {"describe", "stats", "frame"} <= kinds
    seqs = [meta["seq"] for meta, _ in before]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)  # each pushed frame is a newer one
    inside, right = regions(before[-1][1])
    assert before[-1][1].shape == (HEIGHT, WIDTH) and inside > 150 and right < 60, (inside, right)
    assert after[-1][0]["stops"] == -4
    dimmed, _ = regions(after[-1][1])
    assert dimmed < inside / 4, (inside, dimmed)  # 2^-4 of the level, give or take JPEG
    assert "stops must be a number" in error["error"] and "'bright'" in error["error"]


# -- in a browser -----------------------------------------------------------------------------------
def find_chromium() -> str | None:
    named = os.environ.get(CHROMIUM_ENV)
    if named:
        return named
    return next((path for name in ("chromium", "chromium-browser") if (path := shutil.which(name))), None)


def test_the_page_shows_the_live_scene_in_headless_chromium(served, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (the dev extra)")
    chromium = find_chromium()
    if chromium is None:
        pytest.skip(f"no chromium found (apt-get install chromium, or set {CHROMIUM_ENV}); .ci/run installs it")
    daemon, viewer, base = served
    describe = get_json(base + "/api/describe")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 760})
            page.goto(base + "/")
            page.wait_for_function("document.getElementById('seq').textContent !== '-'", timeout=20_000)
            first = int(page.text_content("#seq"))
            page.wait_for_function(f"Number(document.getElementById('seq').textContent) > {first + 20}",
                                   timeout=10_000)
            page.wait_for_function("document.getElementById('connection').textContent === 'streaming'",
                                   timeout=10_000)
            page.screenshot(path=str(tmp_path / "page.png"))
            shot = tmp_path / "video.png"
            page.locator("#video").screenshot(path=str(shot))
            text = page.text_content("body")
            page.locator("#brightness").evaluate("e => { e.value = -4; e.dispatchEvent(new Event('input')); }")
            shown = int(page.text_content("#shown"))
            page.wait_for_function(f"Number(document.getElementById('shown').textContent) > {shown + 5}",
                                   timeout=10_000)
            dim = tmp_path / "video-dim.png"
            page.locator("#video").screenshot(path=str(dim))
            stops = page.text_content("#stops")
        finally:
            browser.close()
    grey = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert grey.shape[1] > WIDTH * 4  # the frame is drawn large, not as a thumbnail
    inside, right = regions(grey)
    assert inside > 150 and right < 60, f"rectangle {inside:.0f}, right side {right:.0f}: see {shot}"
    dimmed, _ = regions(np.asarray(Image.open(dim).convert("L"), dtype=float))
    assert dimmed < inside / 4 and stops == "-4.0 stops", (inside, dimmed, stops)
    assert describe["stream_id"] in text and "frames/s received" in text and "discontinuities" in text
    assert "ring overrun planes" in text and "capture -> browser" in text


# -- the command line and the pieces ------------------------------------------------------------------
def test_an_exposed_or_busy_address_is_refused(tmp_path):
    exposed = subprocess.run([*HOST, "serve", "tcp://127.0.0.1:5555", "--http", "0.0.0.0:0", "--seconds", "1"],
                             capture_output=True, text=True, timeout=60)
    assert exposed.returncode == 2 and "without --insecure" in exposed.stderr, exposed.stderr
    insecure = subprocess.run([*HOST, "serve", "tcp://127.0.0.1:5555", "--http", "0.0.0.0:0", "--insecure",
                               "--seconds", "1"], capture_output=True, text=True, timeout=60)
    assert insecure.returncode == 0 and "viewer on http://0.0.0.0:" in insecure.stdout, insecure.stderr
    assert "not loopback and has no authentication" in insecure.stderr
    bad = subprocess.run([*HOST, "serve", "tcp://127.0.0.1:5555", "--http", "localhost:http"], capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 2 and "'localhost:http'" in bad.stderr
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        taken = subprocess.run([*HOST, "serve", "tcp://127.0.0.1:5555", "--http", f"127.0.0.1:{port}", "--seconds", "5"],
                               capture_output=True, text=True, timeout=60)
    assert taken.returncode == 5 and f"127.0.0.1:{port}" in taken.stderr, taken.stderr


def test_exposure_maps_values_to_grey_and_checks_settings():
    image = np.zeros((40, 40), dtype=np.float32)
    image[:, :20] = 0.5
    image[0, 0] = np.nan
    exposure = Exposure()
    grey = exposure.grey(image)
    assert grey[5, 5] == 255 and grey[5, 30] == 0 and grey[0, 0] == 0 and exposure.reference == pytest.approx(0.5)
    exposure.apply({"stops": -1})
    assert exposure.grey(image)[5, 5] == 127
    exposure.apply({"auto": False})
    assert exposure.grey(image * 2)[5, 5] == 255 and exposure.reference == pytest.approx(0.5)  # held, not re-fit
    exposure.apply({"auto": True})
    exposure.grey(image * 2)
    assert 0.5 < exposure.reference < 1.0  # follows, smoothed
    for bad in ({"stops": 9}, {"stops": "1"}, {"stops": float("nan")}, {"auto": "yes"}, [1]):
        with pytest.raises(ValueError):
            exposure.apply(bad)
    with pytest.raises(ValueError, match=r"2-D frames, got shape \(2, 3, 4\)"):
        exposure.grey(np.zeros((2, 3, 4)))


def test_the_default_control_url_follows_the_daemons_defaults():
    assert default_control_url("tcp://127.0.0.1:5555") == "tcp://127.0.0.1:5556"
    assert default_control_url("tcp://[::1]:7000") == "tcp://[::1]:7001"
    assert default_control_url("ipc:///run/spike-edge/frames") is None
    assert HttpAddress("::1", 8080).url() == "http://[::1]:8080"
