"""``python -m mnist_pipeline serve [--port 0]``: the model over HTTP (``serving.app``) with a
page to draw on, on 127.0.0.1 only: it is for trying the model on this machine. Ctrl-C stops it.
"""

from __future__ import annotations

import argparse
import socket
from pathlib import Path

from mnist_pipeline.core.cli import Interrupted, entry_point
from mnist_pipeline.core.errors import PipelineError, printable
from mnist_pipeline.serving.app import create_app, read_accuracy
from mnist_pipeline.serving.model import DEFAULT_MODEL, load_classifier

HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_METRICS = Path("metrics/eval.json")


@entry_point
def main(argv: list[str] | None = None) -> None:
    """Load the model, bind 127.0.0.1:PORT, print the URL, serve until stopped."""
    import uvicorn

    parser = argparse.ArgumentParser(
        prog="python -m mnist_pipeline serve",
        description="Serve the ONNX model over HTTP on 127.0.0.1, with a draw-a-digit page.",
    )
    parser.add_argument(
        "--model", type=Path, default=DEFAULT_MODEL, help=f"default: {DEFAULT_MODEL}"
    )
    parser.add_argument(
        "--metrics", type=Path, default=DEFAULT_METRICS,
        help=f"evaluate's metrics, for the accuracy /health reports; default: {DEFAULT_METRICS}",
    )  # fmt: skip
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"0: any free port; default: {DEFAULT_PORT}"
    )
    args = parser.parse_args(argv)
    classifier = load_classifier(args.model)
    accuracy = read_accuracy(args.metrics.read_text()) if args.metrics.is_file() else None
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((HOST, args.port))
    except OSError as err:
        raise PipelineError(
            f"cannot listen on {HOST}:{args.port} ({printable(err.strerror)}); "
            "pass another --port (0 picks a free one)"
        ) from err
    listener.listen(128)  # connections queue from here on, before uvicorn accepts them
    config = uvicorn.Config(
        create_app(classifier, accuracy),
        log_level="warning",
        timeout_keep_alive=5,
        limit_concurrency=64,  # beyond this, 503 at once instead of a growing queue
        h11_max_incomplete_event_size=16 * 1024,
    )
    url = f"http://{HOST}:{listener.getsockname()[1]}/"
    print(f"serving {classifier.model} ({classifier.dataset}) on {url} (Ctrl-C stops)", flush=True)
    try:
        uvicorn.Server(config).run(sockets=[listener])
    except Interrupted:  # uvicorn shut down cleanly, then re-raised the signal it caught
        print("serve: stopped", flush=True)
