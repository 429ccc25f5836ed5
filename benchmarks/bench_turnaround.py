"""Experiment turnaround on the default pipeline: where `dvc exp run -S train.lr=…` spends
its seconds, for two revisions side by side in one run.

    .venv/bin/python benchmarks/bench_turnaround.py                       # 51f46ea vs working tree
    .venv/bin/python benchmarks/bench_turnaround.py --old HEAD~3 --queue   # + the 4-exp queue

Each revision runs in a throwaway git repo (default params: embedded data, 10 epochs):
cold and best-of-three no-op ``dvc repro``; for train, evaluate and report, process start +
imports (``python -c "import <stage>"``) and the whole stage run, best of two each (work =
the difference); two ``dvc exp run -S train.lr=…`` (DVC's own share = their mean minus the
three stage runs); with ``--queue``, 4 experiments through ``dvc exp run --run-all -j 1``
and ``-j 2``. Prints a markdown table (also ``benchmarks/results/turnaround.md``).
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

import yaml

from common import REPO, environment, make_copy, markdown, write_results

STAGES = ("train", "evaluate", "report")


def sh(cmd: list[str] | str, cwd: Path, env: dict[str, str]) -> float:
    """Run ``cmd`` (a string runs through the shell); its wall seconds. Raises on failure."""
    start = time.perf_counter()
    proc = subprocess.run(
        cmd, cwd=cwd, env=env, shell=isinstance(cmd, str), capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise SystemExit(f"failed in {cwd}: {cmd}\n{proc.stdout}\n{proc.stderr}")
    return time.perf_counter() - start


def best(times: int, cmd: list[str] | str, cwd: Path, env: dict[str, str]) -> float:
    return min(sh(cmd, cwd, env) for _ in range(times))


def checkout(rev: str, dest: Path, env: dict[str, str]) -> None:
    """``rev``'s tree (``worktree``: the working tree's files) as a fresh one-commit repo."""
    if rev == "worktree":
        make_copy(dest, env)
        return
    tar = subprocess.run(["git", "archive", rev], cwd=REPO, check=True, capture_output=True)
    with tarfile.open(fileobj=io.BytesIO(tar.stdout)) as archive:
        archive.extractall(dest, filter="data")
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", rev]):
        sh(cmd, dest, env)


def stage_times(repo: Path, env: dict[str, str]) -> dict[str, tuple[float, float]]:
    """Per stage: (process start + imports, whole run), best of two each."""
    commands = {name: spec["cmd"] for name, spec in yaml.safe_load(
        (repo / "dvc.yaml").read_text())["stages"].items()}  # fmt: skip
    times = {}
    for name in STAGES:
        imports = best(2, f"PYTHONPATH=src:stages python -c 'import {name}'", repo, env)
        times[name] = (imports, best(2, commands[name], repo, env))
    return times


def measure(rev: str, queue: bool, env: dict[str, str]) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-turnaround-") as tmp:
        repo = Path(tmp)
        checkout(rev, repo, env)
        row = {"cold repro": sh(["dvc", "repro"], repo, env)}
        sh(["git", "add", "-A"], repo, env)
        sh(["git", "commit", "-qm", "baseline", "--allow-empty"], repo, env)
        row["no-op repro"] = best(3, ["dvc", "repro"], repo, env)
        stages = stage_times(repo, env)
        sh(["git", "checkout", "--", "."], repo, env)  # the stage runs rewrote outputs
        for name, (imports, whole) in stages.items():
            row[f"{name}: start + imports"] = imports
            row[f"{name}: work"] = whole - imports
        runs = [sh(["dvc", "exp", "run", "-S", f"train.lr={lr}"], repo, env) for lr in (0.02, 0.03)]
        row["dvc exp run -S train.lr"] = statistics.mean(runs)
        row["dvc's own share"] = row["dvc exp run -S train.lr"] - sum(w for _, w in stages.values())
        if queue:
            for workers in (1, 2):
                sh(["dvc", "exp", "run", "--queue", "-S", "train.lr=0.05,0.1",
                    "-S", "train.seed=1,2"], repo, env)  # fmt: skip
                start = time.perf_counter()
                sh(["dvc", "exp", "run", "--run-all", "-j", str(workers)], repo, env)
                row[f"4-experiment queue, -j {workers}"] = time.perf_counter() - start
                sh(["dvc", "exp", "remove", "--all-commits"], repo, env)
                sh(["dvc", "queue", "remove", "--all"], repo, env)
        return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", default="51f46ea", help="the revision to compare against")
    parser.add_argument("--new", default="worktree", help="a revision, or the working tree")
    parser.add_argument("--queue", action="store_true", help="also time a 4-experiment queue")
    args = parser.parse_args()
    env = environment()
    rows = {}
    for rev in (args.old, args.new):
        print(f"measuring {rev} ...", flush=True)
        rows[rev] = measure(rev, args.queue, env)
    old, new = rows[args.old], rows[args.new]
    cells = [
        (key, f"{old[key]:.2f}", f"{new[key]:.2f}", f"{old[key] / max(new[key], 1e-3):.1f}x")
        for key in old
    ]
    title = (
        f"## Turnaround: {args.old} vs {args.new} (default params; {os.cpu_count()} CPUs, "
        f"load avg {os.getloadavg()[0]:.2f} at the end)"
    )
    columns = ["seconds (wall)", args.old, args.new, "ratio"]
    write_results("turnaround", f"{title}\n\n{markdown(cells, columns)}\n")


if __name__ == "__main__":
    main()
