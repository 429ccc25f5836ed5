"""Measure parallel experiment sweeps: `dvc queue start -j 1` vs `-j 2` on this machine.

    .venv/bin/python benchmarks/bench_queue.py [--epochs 5] [--dataset mnist-embedded]

Copies the repo into a temp git repo (as ``bench_pipeline.py`` does), reproduces the
baseline once so that download/preprocess are cached, then for each configuration queues
the same 4-experiment grid (``train.lr`` × ``train.seed``) and times ``dvc queue start -j N``
until the queue is drained. Configurations: 1 worker / 1 thread, 2 workers / 1 thread
each, 2 workers / 2 threads each (oversubscribed on 2 cores). Prints a markdown table;
never asserts timings.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

from common import DATASETS, environment, make_copy, markdown

CONFIGS = [(1, 1), (2, 1), (2, 2)]  # (workers, torch threads per experiment)


def sh(cmd: list[str], cwd: Path, env: dict[str, str]) -> str:
    return subprocess.run(cmd, cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


def drain(cwd: Path, env: dict[str, str]) -> None:
    while True:
        status = sh(["dvc", "queue", "status"], cwd, env)
        if "Queued" not in status and "Running" not in status:
            return
        time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--dataset", choices=["mnist-embedded", "fashion-mnist"],
                        default="mnist-embedded")  # fmt: skip
    args = parser.parse_args()
    env = environment()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-queue-") as tmp:
        repo = Path(tmp)
        data = DATASETS[args.dataset].model_dump()
        make_copy(repo, env, data=data, train={"epochs": args.epochs})
        sh(["dvc", "repro", "-q"], repo, env)
        sh(["git", "add", "-A"], repo, env)
        sh(["git", "commit", "-qm", "baseline"], repo, env)
        for workers, threads in CONFIGS:
            sh(["dvc", "exp", "run", "--queue", "-S", "train.lr=0.05,0.1",
                "-S", "train.seed=1,2", "-S", f"train.threads={threads}"], repo, env)  # fmt: skip
            start = time.perf_counter()
            sh(["dvc", "queue", "start", "-j", str(workers)], repo, env)
            drain(repo, env)
            seconds = time.perf_counter() - start
            status = sh(["dvc", "queue", "status"], repo, env)
            rows.append((workers, threads, seconds, status.count("Success")))
            print(f"-j {workers}, threads {threads}: {seconds:.1f} s", flush=True)
            sh(["dvc", "exp", "remove", "--all-commits"], repo, env)
            sh(["dvc", "queue", "remove", "--all"], repo, env)
    base = rows[0][2]
    print(f"\n## 4-experiment sweep, {args.dataset}, {args.epochs} epochs\n")
    cells = [(w, t, f"{s:.1f}", f"{base / s:.2f}x", ok) for w, t, s, ok in rows]
    columns = ["workers (-j)", "threads each", "wall s", "speed-up vs -j 1", "succeeded"]
    print(markdown(cells, columns))


if __name__ == "__main__":
    main()
