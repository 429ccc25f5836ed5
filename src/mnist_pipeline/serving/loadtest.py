"""A bounded load test of a running server (``benchmarks/bench_serve.py``, ``test_serve``):
N ``POST /predict`` requests, C at a time, each worker on one kept-alive connection."""

from __future__ import annotations

import http.client
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlsplit

import numpy as np


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
