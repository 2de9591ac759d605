"""``spike-host serve URL --http 127.0.0.1:8080``: a live web viewer of the stream at URL (``host.serve``).

Opens a page with the video, its statistics (frames/s, latency, drops, discontinuities) and the
daemon's ``describe``, updated live over a WebSocket, with a brightness control. It listens on
loopback unless ``--http`` names another address together with ``--insecure`` (the page has no
authentication). ``describe`` comes from ``--control URL`` (default: the stream's port plus one,
the daemon's default layout). Stops on SIGINT/SIGTERM (exit 0) or after ``--seconds``; exit 5 when
the HTTP address cannot be bound.
"""

from __future__ import annotations

import asyncio
import logging
import signal

import click

from edge.protocol.endpoints import HttpAddress, parse_http_address
from firmware_io.exits import ExitCode, fail
from edge.protocol.security import CurveClient
from host.cli.common import curve_options, open_subscriber
from host.serve import DEFAULT_DISPLAY_FPS, DescribePoller, StreamWatcher, Viewer, default_control_url, serve as serve_viewer

log = logging.getLogger("host.serve")
DEFAULT_HTTP = "127.0.0.1:8080"


def _http_address(ctx: click.Context, param: click.Parameter, value: str) -> HttpAddress:
    try:
        return parse_http_address(value, "--http")
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


@click.command()
@click.argument("url")
@click.option("--http", "http", default=DEFAULT_HTTP, show_default=True, callback=_http_address, metavar="HOST:PORT",
              help="Where the page is served (a bare PORT: 127.0.0.1); a non-loopback address needs --insecure.")
@click.option("--control", metavar="URL",
              help="The daemon's control socket, for describe (default: the stream's port + 1).")
@click.option("--fps", type=click.FloatRange(min=1, max=120), default=DEFAULT_DISPLAY_FPS, show_default=True,
              help="Most frames a second sent to each browser.")
@click.option("--insecure", is_flag=True, help="Allow a non-loopback --http address (logs a warning); refused otherwise.")
@click.option("--seconds", type=click.FloatRange(min=0, min_open=True), help="Stop after this long (default: until Ctrl-C).")
@curve_options
def serve(url: str, http: HttpAddress, control: str | None, fps: float, insecure: bool, seconds: float | None,
          curve: CurveClient | None) -> None:
    """Serve a live web viewer of the stream at URL: video, statistics, describe, brightness."""
    if not http.loopback and not insecure:
        fail(f"refusing to serve the viewer on {http} without --insecure: it is not a loopback address and the page "
             "has no authentication (serve it on 127.0.0.1 and reach it through an SSH tunnel, or give --insecure)")
    control_url = control if control is not None else default_control_url(url)
    open_subscriber(url, curve=curve).close()  # a bad URL is a usage error here, not a silent page
    watcher = StreamWatcher(url, curve=curve).start()
    poller = DescribePoller(control_url, curve=curve).start()
    viewer = Viewer(watcher, poller, display_fps=fps)
    try:
        asyncio.run(_serve(viewer, http, seconds, insecure))
    except OSError as exc:
        fail(f"cannot serve the viewer on {http}: {exc}", ExitCode.BIND_FAILED)
    finally:
        watcher.stop()
        poller.stop()


async def _serve(viewer: Viewer, http: HttpAddress, seconds: float | None, insecure: bool) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if seconds is not None:
        loop.call_later(seconds, stop.set)

    def ready(page_url: str) -> None:
        if not http.loopback:
            log.warning("the viewer on %s is not loopback and has no authentication (--insecure): any host that "
                        "reaches this port sees the stream", page_url)
        click.echo(f"viewer on {page_url} (stream {viewer.watcher.url}, control {viewer.poller.control_url})")

    await serve_viewer(viewer, http, stop=stop, ready=ready)
