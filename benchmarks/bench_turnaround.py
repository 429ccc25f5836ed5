"""Experiment turnaround on the default pipeline: where `dvc exp run -S train.lr=…` spends its
seconds, for two revisions side by side in one run.

    .venv/bin/python benchmarks/bench_turnaround.py                        # 51f46ea vs worktree
    .venv/bin/python benchmarks/bench_turnaround.py --old HEAD~3 --queue   # + a 4-exp queue

Each revision in a throwaway git repo: cold and no-op ``dvc repro``; per stage, start + imports
and its work; ``dvc exp run -S train.lr`` (DVC's own share: less the stages), and over ``python
-c "import torch"``; with ``--queue``, 4 experiments at ``-j 1`` and ``-j 2``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import yaml

from common import environment, make_copy, timed, write_results

STAGES = ("train", "evaluate", "report")


def measure(rev: str, queue: bool, env: dict[str, str]) -> dict[str, float]:
    """Every row's seconds for ``rev`` (``worktree``: the working tree's files)."""
    with tempfile.TemporaryDirectory(prefix="bench-turnaround-") as tmp:
        repo = Path(tmp)

        def run(cmd: list[str] | str, times: int = 1) -> float:
            return min(timed(cmd, repo, env)[0] for _ in range(times))

        make_copy(repo, env, "" if rev == "worktree" else rev)
        row = {"cold repro": run(["dvc", "repro"])}
        run(["git", "add", "-A"])
        run(["git", "commit", "-qm", "baseline", "--allow-empty"])
        row["no-op repro"] = run(["dvc", "repro"], 3)
        commands = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]
        stages = 0.0
        for name in STAGES:
            imports = run(f"PYTHONPATH=src:stages python -c 'import {name}'", 2)
            row[f"{name}: start + imports"] = imports
            whole = run(commands[name]["cmd"], 2)
            row[f"{name}: work"], stages = whole - imports, stages + whole
        run(["git", "checkout", "--", "."])  # the stage runs rewrote outputs
        runs = [run(["dvc", "exp", "run", "-S", f"train.lr={lr}"]) for lr in (0.02, 0.03)]
        exp = row["dvc exp run -S train.lr"] = statistics.mean(runs)
        row["dvc's own share"] = exp - stages
        torch = row['python -c "import torch"'] = run([sys.executable, "-c", "import torch"], 3)
        row["exp run / import torch"] = exp / torch
        for workers in (1, 2) if queue else ():
            run(["dvc", "exp", "run", "--queue", "-S", "train.lr=0.05,0.1", "-S", "train.seed=1,2"])
            row[f"4-experiment queue, -j {workers}"] = run(
                ["dvc", "exp", "run", "--run-all", "-j", str(workers)]
            )
            run(["dvc", "exp", "remove", "--all-commits"])
            run(["dvc", "queue", "remove", "--all"])
        return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", default="51f46ea", help="the revision to compare against")
    parser.add_argument("--new", default="worktree", help="a revision, or the working tree")
    parser.add_argument("--queue", action="store_true", help="also time a 4-experiment queue")
    args = parser.parse_args()
    rows = {}
    for rev in (args.old, args.new):
        print(f"measuring {rev} ...", flush=True)
        rows[rev] = measure(rev, args.queue, environment())
    old, new = rows[args.old], rows[args.new]
    cells = [
        (key, f"{old[key]:.2f}", f"{new[key]:.2f}", f"{old[key] / max(new[key], 1e-3):.1f}x")
        for key in old
    ]
    columns = ["seconds (wall)", args.old, args.new, "ratio"]
    title = f"Turnaround: {args.old} vs {args.new}, default params"
    write_results("turnaround", title, (cells, columns))


if __name__ == "__main__":
    main()
