"""Time the whole DVC pipeline (cold and no-op) and measure each stage's peak memory.

    .venv/bin/python benchmarks/bench_pipeline.py                  # fashion-mnist, 10 epochs
    .venv/bin/python benchmarks/bench_pipeline.py --epochs 3 --keep

Copies the repo's files (``git ls-files`` plus untracked, not ignored ones) into a temp
dir, writes its ``params.yaml`` with ``data.dataset=fashion-mnist``, ``data.source=mirror``,
``data.mirror=/usr/share/datasets/fashion-mnist`` and ``train.epochs=N``, makes it a git
repo with one commit, and with ``.venv/bin`` first on PATH:

1. cold ``dvc repro``: empty DVC cache, no outputs (wall time);
2. no-op ``dvc repro``: nothing changed (best and all of ``--noop-runs`` runs);
3. per stage, its ``cmd`` from ``dvc.yaml`` run directly under ``/usr/bin/time``: peak
   RSS of the stage's own process (the max over the shell and python, which is python),
   and its wall time; then ``dvc repro -s --force <stage>`` under ``/usr/bin/time``,
   whose peak RSS is the max over dvc's own process and the stage's (so it shows when
   dvc, not the stage, is the bigger one). For scale it also measures a no-op
   ``dvc repro`` and ``python -c 'import torch'`` the same way.

Without ``/usr/bin/time`` it falls back to ``resource.getrusage(RUSAGE_CHILDREN)``,
which only reports a new peak when a stage beats every earlier child. Prints a markdown
table and writes it to ``benchmarks/results/<name>.md``; never asserts timings.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from common import FASHION_MIRROR, VENV_BIN, environment, make_copy, markdown, write_results

GNU_TIME = Path("/usr/bin/time")


def run(cmd: list[str] | str, cwd: Path, env: dict[str, str], log: Path) -> float:
    """Run a command, appending its output to ``log``; wall seconds. Raises on failure."""
    start = time.perf_counter()
    with open(log, "a") as out:
        out.write(f"\n$ {cmd}\n")
        out.flush()
        proc = subprocess.run(
            cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, shell=isinstance(cmd, str)
        )
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {cmd}; see {log}")
    return seconds


def measured(cmd: str, cwd: Path, env: dict[str, str], log: Path) -> tuple[float, float]:
    """(peak RSS in MiB, wall seconds) of ``cmd`` run through the shell."""
    if GNU_TIME.exists():
        with tempfile.NamedTemporaryFile("r", suffix=".time") as stats:
            wall = run(
                [str(GNU_TIME), "-f", "%M", "-o", stats.name, "sh", "-c", cmd], cwd, env, log
            )
            kib = int(stats.read().split()[-1])
        return kib / 1024, wall
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    wall = run(cmd, cwd, env, log)
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return (after / 1024 if after > before else float("nan")), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--noop-runs", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the temp copy")
    parser.add_argument("--name", help="results file name (default: pipeline-fashion-Nep)")
    args = parser.parse_args()
    name = args.name or f"pipeline-fashion-{args.epochs}ep"

    env = environment()
    dvc = str(VENV_BIN / "dvc")
    work = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    log = work.parent / f"{work.name}.log"
    print(f"copy: {work}  log: {log}", flush=True)
    try:
        data = {"dataset": "fashion-mnist", "source": "mirror", "mirror": FASHION_MIRROR}
        make_copy(work, env, data=data, train={"epochs": args.epochs})
        stages = list(yaml.safe_load((work / "dvc.yaml").read_text())["stages"].items())

        print("cold dvc repro ...", flush=True)
        cold = run([dvc, "repro"], work, env, log)
        noop_runs = [measured(f"{dvc} repro", work, env, log) for _ in range(args.noop_runs)]
        noop = [wall for _, wall in noop_runs]
        noop_rss = max(rss for rss, _ in noop_runs)
        torch_rss, torch_wall = measured("python -c 'import torch'", work, env, log)

        rows = []
        for stage, spec in stages:
            print(f"stage {stage} ...", flush=True)
            cmd = " ".join(str(spec["cmd"]).split())
            rss, wall = measured(cmd, work, env, log)
            dvc_rss, dvc_wall = measured(f"{dvc} repro -s --force {stage}", work, env, log)
            rows.append((stage, rss, wall, dvc_rss, dvc_wall))
        status = subprocess.run(
            [dvc, "status"], cwd=work, env=env, capture_output=True, text=True
        ).stdout.strip()
    finally:
        if args.keep:
            print(f"kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    how = "/usr/bin/time %M" if GNU_TIME.exists() else "getrusage(RUSAGE_CHILDREN) deltas"
    measures = [
        ("cold `dvc repro` (all 5 stages, empty cache)", f"{cold:.1f}"),
        (f"no-op `dvc repro`, best of {len(noop)}", f"{min(noop):.2f}"),
        ("no-op `dvc repro`, all runs", ", ".join(f"{s:.2f}" for s in noop)),
    ]
    per_stage = [
        (stage, f"{rss:.0f}", f"{wall:.1f}", f"{dvc_rss:.0f}", f"{dvc_wall:.1f}")
        for stage, rss, wall, dvc_rss, dvc_wall in rows
    ]
    text = "\n".join(
        [
            f"## bench_pipeline: fashion-mnist (mirror), {args.epochs} epochs",
            "",
            f"{os.cpu_count()} CPUs; load avg at end {os.getloadavg()[0]:.2f}; peak RSS via {how}",
            "",
            markdown(measures, ["measure", "seconds"]),
            "",
            f"Peak RSS of a no-op `dvc repro` (dvc alone): {noop_rss:.0f} MiB. "
            f"Reference, `python -c 'import torch'`: {torch_rss:.0f} MiB, {torch_wall:.1f} s.",
            "",
            markdown(
                per_stage,
                [
                    "stage",
                    "peak RSS of stage cmd (MiB)",
                    "stage cmd wall (s)",
                    "peak RSS, `dvc repro -s --force` (MiB)",
                    "`dvc repro -s --force` wall (s)",
                ],
            ),
            "",
            f"`dvc status` afterwards: {status or '(no output)'}",
        ]
    )
    write_results(name, text + "\n")
    print(f"command log: {log}")


if __name__ == "__main__":
    main()
