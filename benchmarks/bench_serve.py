"""`serve` under load: throughput and latency percentiles of POST /predict on 127.0.0.1,
and the cold-process time of `predict` for one image.

    .venv/bin/python benchmarks/bench_serve.py --model models/model.onnx
    .venv/bin/python benchmarks/bench_serve.py --requests 1000 --concurrency 16 --cold 10

Starts `python -m mnist_pipeline serve --port 0` with this checkout's code, sends one
28×28-looking drawing (a thick stroke on white, 280×280 PNG, as the page sends) ``--requests``
times, ``--concurrency`` at once (each worker on one kept-alive connection), and prints
requests/s, p50, p99 and the error count. Then runs `predict` on the same image ``--cold``
times, each a new process, and prints the wall time per process (min / median).
"""

from __future__ import annotations

import argparse
import http.client
import io
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
from PIL import Image, ImageDraw

from common import REPO, environment, markdown, write_results


@dataclass(frozen=True)
class LoadResult:
    requests: int
    errors: int  # non-200 answers and failed connections
    seconds: float
    latencies: tuple[float, ...]  # seconds, one per request

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies, q))


def load_test(url: str, png: bytes, requests: int = 1000, concurrency: int = 16) -> LoadResult:
    """Send ``png`` to ``url`` + ``/predict`` ``requests`` times, ``concurrency`` at once."""
    parts = urlsplit(url)
    local = threading.local()

    def one(_: int) -> tuple[float, bool]:
        start = time.perf_counter()
        try:
            if not hasattr(local, "conn"):
                local.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
            local.conn.request("POST", "/predict", body=png, headers={"Content-Type": "image/png"})
            reply = local.conn.getresponse()
            reply.read()
            ok = reply.status == 200
        except (OSError, http.client.HTTPException):
            del local.conn
            ok = False
        return time.perf_counter() - start, ok

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(one, range(requests)))
    latencies, oks = zip(*results, strict=True) if results else ((), ())
    return LoadResult(requests, oks.count(False), time.perf_counter() - start, latencies)


def drawing() -> bytes:
    """A '1' as the page would send it: a black 20 px stroke on a white 280×280 canvas."""
    image = Image.new("L", (280, 280), 255)
    ImageDraw.Draw(image).line([(110, 80), (140, 50), (140, 230)], fill=0, width=20)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=REPO / "models" / "model.onnx")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--cold", type=int, default=10, help="predict processes to time")
    args = parser.parse_args()
    env = {**environment(), "PYTHONPATH": str(REPO / "src")}
    png = drawing()
    command = [sys.executable, "-m", "mnist_pipeline", "serve", "--port", "0"]
    server = subprocess.Popen(
        [*command, "--model", str(args.model)], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        url = server.stdout.readline().split(" on ")[1].split()[0].rstrip("/")
        load_test(url, png, requests=50, concurrency=args.concurrency)  # warm-up
        result = load_test(url, png, args.requests, args.concurrency)
    finally:
        server.terminate()
        server.wait(timeout=30)
    image = Path("/tmp/bench_serve_one.png")
    image.write_bytes(png)
    seconds = []
    for _ in range(args.cold):
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "mnist_pipeline", "predict", str(image), "--model",
             str(args.model)], env=env, check=True, capture_output=True,
        )  # fmt: skip
        seconds.append(time.perf_counter() - start)
    rows = [
        [f"{args.requests} × POST /predict, {args.concurrency} at a time",
         f"{result.throughput:.0f} requests/s", f"p50 {result.percentile(50) * 1000:.1f} ms",
         f"p99 {result.percentile(99) * 1000:.1f} ms", f"{result.errors} errors"],
        [f"predict, one image, new process ×{args.cold}", f"min {min(seconds):.2f} s",
         f"median {statistics.median(seconds):.2f} s", "", ""],
    ]  # fmt: skip
    write_results("serve", markdown(rows, ["what", "rate / time", "", "", "errors"]))


if __name__ == "__main__":
    main()
