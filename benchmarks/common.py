"""What the benchmarks share: paths, the data they time, commands timed, a project copy, and the
tables each prints and keeps as ``benchmarks/results/<name>.md``. Timings are never asserted."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from mnist_pipeline.data.params import DataParams
from mnist_pipeline.data.sources import IDX_FILES, fetch
from mnist_pipeline.data.splits import Split, read_raw_split

Finished = subprocess.CompletedProcess[str]
REPO = Path(__file__).resolve().parents[1]
FASHION_MIRROR = "/usr/share/datasets/fashion-mnist"
DATASETS = {
    "mnist-embedded": DataParams(dataset="mnist", source="embedded"),
    "fashion-mnist": DataParams(dataset="fashion-mnist", source="mirror", mirror=FASHION_MIRROR),
}


def read_splits(dataset: str, raw: Path) -> tuple[Split, Split]:
    """``dataset``'s IDX files fetched into ``raw``; its train and test splits as the pipeline
    reads them."""
    manifest = fetch(DATASETS[dataset], raw)
    train, test = (read_raw_split(raw, *names, manifest) for names in IDX_FILES.values())
    return train, test


def environment() -> dict[str, str]:
    """The venv first on PATH, a fixed git identity, no PYTHONPATH (a copy runs its own src)."""
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    for role in ("AUTHOR", "COMMITTER"):
        env |= {f"GIT_{role}_NAME": "bench", f"GIT_{role}_EMAIL": "bench@example.invalid"}
    env["PATH"] = f"{REPO / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env.pop("PYTHONPATH", None)
    return env


def timed(cmd: list[str] | str, cwd: Path, env: dict[str, str]) -> tuple[float, Finished]:
    """Run ``cmd`` (a string through the shell): its wall seconds and the finished process; a
    failure stops the benchmark with its output."""
    start = time.perf_counter()
    shell = isinstance(cmd, str)
    proc = subprocess.run(cmd, cwd=cwd, env=env, shell=shell, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"failed in {cwd}: {cmd}\n{proc.stdout}\n{proc.stderr}")
    return time.perf_counter() - start, proc


def make_copy(dest: Path, env: dict[str, str], rev: str = "") -> None:
    """A committed git repo at ``dest`` holding revision ``rev``'s files, or (``""``) what a
    clone would: tracked files and the untracked ones git does not ignore."""
    if rev:
        timed(f"git -C {shlex.quote(str(REPO))} archive {shlex.quote(rev)} | tar -x", dest, env)
    listing = ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"]
    names = [] if rev else timed(listing, REPO, env)[1].stdout.split("\0")
    for name in sorted({n for n in names if n and (REPO / n).is_file()}):
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, dest / name)
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "copy"]):
        timed(cmd, dest, env)


Table = tuple[Sequence[Sequence[Any]], Sequence[str]]  # rows of formatted cells, column names


def write_results(name: str, title: str, *tables: Table) -> None:
    """Print ``## title`` with the machine it ran on, then ``tables`` in markdown; keep them as
    ``benchmarks/results/<name>.md``."""
    cpu_lines = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((ln.split(":")[1].strip() for ln in cpu_lines if ln.startswith("model name")), "?")
    machine = f"{cpu}, {os.cpu_count()} cores, load avg {os.getloadavg()[0]:.2f} at the end"
    shown = [pd.DataFrame(list(rows), columns=list(columns)) for rows, columns in tables]
    markdown = [frame.to_markdown(index=False, disable_numparse=True) for frame in shown]
    text = "\n\n".join([f"## {title} ({machine})", *markdown]) + "\n"
    results = REPO / "benchmarks" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / f"{name}.md").write_text(text)
    print(f"\n{text}\nwritten: {results / name}.md")
