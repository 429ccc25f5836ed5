"""`serve` under load: a drawn '1' (a 280×280 PNG, as the page sends) POSTed ``--requests`` times,
``--concurrency`` at once on kept-alive connections (requests/s, p50, p99, errors); then
`predict` on it ``--cold`` times, a new process each (min / median wall time).

    .venv/bin/python benchmarks/bench_serve.py [--requests 1000 --concurrency 16 --cold 10]
"""

from __future__ import annotations

import argparse
import http.client
import io
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
from PIL import Image, ImageDraw

from common import REPO, environment, timed, write_results


def load_test(url: str, png: bytes, requests: int, concurrency: int) -> list[tuple[float, bool]]:
    """(seconds, answered 200) of each of ``requests`` POSTs of ``png`` to ``url/predict``."""
    host, local = urlsplit(url), threading.local()

    def one(_: int) -> tuple[float, bool]:
        start = time.perf_counter()
        try:
            if not hasattr(local, "conn"):
                local.conn = http.client.HTTPConnection(host.hostname, host.port, timeout=30)
            local.conn.request("POST", "/predict", body=png, headers={"Content-Type": "image/png"})
            reply = local.conn.getresponse()
            reply.read()
            ok = reply.status == 200
        except (OSError, http.client.HTTPException):
            del local.conn
            ok = False
        return time.perf_counter() - start, ok

    with ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(one, range(requests)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=REPO / "models" / "model.onnx")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--cold", type=int, default=10, help="predict processes to time")
    args = parser.parse_args()
    env = {**environment(), "PYTHONPATH": str(REPO / "src")}
    image = Image.new("L", (280, 280), 255)
    ImageDraw.Draw(image).line([(110, 80), (140, 50), (140, 230)], fill=0, width=20)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    png = buffer.getvalue()
    command = [sys.executable, "-m", "mnist_pipeline", "serve", "--port", "0"]
    server = subprocess.Popen(
        [*command, "--model", str(args.model)], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        url = server.stdout.readline().split(" on ")[1].split()[0].rstrip("/")
        load_test(url, png, 50, args.concurrency)  # warm-up
        start = time.perf_counter()
        latencies, oks = zip(*load_test(url, png, args.requests, args.concurrency), strict=True)
        wall = time.perf_counter() - start
    finally:
        server.terminate()
        server.wait(timeout=30)
    with tempfile.TemporaryDirectory() as tmp:
        image.save(Path(tmp) / "one.png")
        predict = [*command[:3], "predict", f"{tmp}/one.png", "--model", str(args.model)]
        seconds = [timed(predict, REPO, env)[0] for _ in range(args.cold)]
    p50, p99 = (np.percentile(latencies, q) * 1000 for q in (50, 99))
    rows = [
        [f"{args.requests} × POST /predict, {args.concurrency} at a time",
         f"{args.requests / wall:.0f} requests/s", f"p50 {p50:.1f} ms", f"p99 {p99:.1f} ms",
         f"{oks.count(False)} errors"],
        [f"predict, one image, new process ×{args.cold}", f"min {min(seconds):.2f} s",
         f"median {statistics.median(seconds):.2f} s", "", ""],
    ]  # fmt: skip
    columns = ["what", "rate / time", "", "", "errors"]
    write_results("serve", f"serve: {args.model.name}", (rows, columns))


if __name__ == "__main__":
    main()
