"""What the benchmarks share: paths, the datasets they time, a project copy, tables, results.

Every benchmark prints a markdown table (``markdown``) and, where it keeps one, writes it to
``benchmarks/results/<name>.md`` (``write_results``). Timings are printed, never asserted.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from mnist_pipeline.data.params import DataParams

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
FASHION_MIRROR = "/usr/share/datasets/fashion-mnist"
DATASETS = {
    "mnist-embedded": DataParams(dataset="mnist", source="embedded"),
    "fashion-mnist": DataParams(dataset="fashion-mnist", source="mirror", mirror=FASHION_MIRROR),
}


def markdown(rows: Sequence[Sequence[Any]], columns: Sequence[str]) -> str:
    """A GitHub-markdown table of already formatted cells."""
    frame = pd.DataFrame(list(rows), columns=list(columns))
    return frame.to_markdown(index=False, disable_numparse=True)


def write_results(name: str, text: str) -> None:
    """Print ``text`` and keep it as ``benchmarks/results/<name>.md``."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.md").write_text(text)
    print(f"\n{text}\nwritten: {RESULTS / name}.md")


def environment() -> dict[str, str]:
    """The venv first on PATH, a fixed git identity, no PYTHONPATH (a copy runs its own src)."""
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    for role in ("AUTHOR", "COMMITTER"):
        env |= {f"GIT_{role}_NAME": "bench", f"GIT_{role}_EMAIL": "bench@example.invalid"}
    env["PATH"] = f"{REPO / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env.pop("PYTHONPATH", None)
    return env


def repo_files() -> list[str]:
    """What a clone would hold: tracked files plus untracked ones git does not ignore."""
    listing = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        check=True,
        capture_output=True,
    ).stdout.decode()
    return sorted({n for n in listing.split("\0") if n and (REPO / n).is_file()})


def make_copy(dest: Path, env: dict[str, str], **sections: dict[str, Any]) -> None:
    """A committed git repo at ``dest`` holding the project (what a clone would hold), with
    ``params.yaml`` sections updated, e.g. ``train={"epochs": 3}``."""
    for name in repo_files():
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, dest / name)
    params = yaml.safe_load((dest / "params.yaml").read_text())
    for section, values in sections.items():
        params[section].update(values)
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "copy"]):
        subprocess.run(cmd, cwd=dest, env=env, check=True)


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo (the machine a table was measured on)."""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"
