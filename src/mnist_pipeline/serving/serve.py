"""``serve [--host 127.0.0.1] [--port 8000]``: the model over HTTP (``serving.app``), on loopback
unless another address is given (then a warning: other machines can reach it)."""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
from pathlib import Path

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from mnist_pipeline.core.cli import Interrupted, entry_point
from mnist_pipeline.core.errors import PipelineError
from mnist_pipeline.serving.app import create_app
from mnist_pipeline.serving.model import DEFAULT_MODEL, load_classifier

HOST = "127.0.0.1"
LOOPBACK = (HOST, "localhost", "::1")
REQUEST_SECONDS = 5.0  # from connecting (or a next request's first byte) to its last byte


class Deadline(H11Protocol):
    """uvicorn's HTTP/1.1 connection, closed when a request takes over ``REQUEST_SECONDS``."""

    timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.timer = self.loop.call_later(REQUEST_SECONDS, self.transport.close)

    def data_received(self, data: bytes) -> None:
        if self.timer is None:  # the next request on a kept-alive connection
            self.timer = self.loop.call_later(REQUEST_SECONDS, self.transport.close)
        super().data_received(data)
        if self.conn.their_state not in (h11.IDLE, h11.SEND_BODY):  # received in full
            self.timer.cancel()
            self.timer = None


def server(model: Path, host: str = HOST, port: int = 0) -> tuple[uvicorn.Server, socket.socket]:
    """The checked model's server, not yet running, and its listening socket."""
    classifier = load_classifier(model)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        listener = socket.create_server((host, port), family=family, backlog=128)
    except (OSError, OverflowError) as err:  # in use, not an address here, port > 65535
        raise PipelineError(
            f"cannot listen on {host} port {port} ({err}); pass another "
            "--host or --port (0 picks a free one)"
        ) from err
    if host not in LOOPBACK:
        print(f"warning: other machines can reach {host}; anyone there can use it", file=sys.stderr)
    config = uvicorn.Config(
        create_app(classifier, [host, *LOOPBACK] if host in LOOPBACK else [host]),
        http=Deadline,
        log_config=None,  # its lines go through the root logger, as the pipeline's do
        log_level="warning",
        timeout_keep_alive=5,
        limit_concurrency=128,  # beyond this, 503 at once instead of a growing queue
        h11_max_incomplete_event_size=16 * 1024,
    )
    return uvicorn.Server(config), listener


@entry_point
def main(argv: list[str] | None = None) -> None:
    """Load and check the model, listen, print the URL, serve until stopped."""
    parser = argparse.ArgumentParser(
        description="Serve the ONNX model over HTTP, with a draw-a-digit page and API docs.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="the ONNX model")
    parser.add_argument("--host", default=HOST, help="the address to listen on and answer to")
    parser.add_argument("--port", type=int, default=8000, help="0: any free port")
    args = parser.parse_args(argv)
    host = args.host.strip("[]").lower()
    app, listener = server(args.model, host, args.port)
    address = f"[{host}]" if ":" in host else host
    url = f"http://{address}:{listener.getsockname()[1]}/"
    print(f"serving {app.config.app.title} on {url} (docs: {url}docs; Ctrl-C stops)", flush=True)
    try:
        app.run(sockets=[listener])
    except Interrupted:  # uvicorn shut down cleanly, then re-raised the signal it caught
        print("serve: stopped", flush=True)
