"""The README's preset table: each preset of ``presets.yaml`` run by the one command a user
types, timed whole, on a fresh copy of the project.

    .venv/bin/python benchmarks/presets.py [--preset cnn] [--dataset fashion-mnist]

Each run is a whole ``dvc exp run`` (``python -m mnist_pipeline preset NAME <dataset args>``)
in a throwaway copy of the project (no DVC cache, no outputs). Prints a markdown table (test
accuracy, wall seconds, the train stage's s/epoch, the model's md5: presets run ``native``
kernels, so it repeats on the same CPU only) and keeps it as ``benchmarks/results/presets.md``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import FASHION_MIRROR, cpu_name, environment, make_copy, markdown, write_results
from mnist_pipeline.tools.presets import load_presets

DATASET_ARGS = {
    "fashion-mnist": [
        "-S", "data.dataset=fashion-mnist", "-S", "data.source=mirror",
        "-S", f"data.mirror={FASHION_MIRROR}",
    ],
    "mnist-embedded": ["-S", "data.source=embedded"],
}  # fmt: skip
EPOCH_LINE = re.compile(r"epoch \d+/\d+: .*\((\d+\.\d+) s\)")


def run_preset(name: str, dataset: str, workdir: Path) -> tuple[float, float, float, str]:
    """(test accuracy, wall s of the whole command, mean s/epoch, the model's md5)."""
    env = environment()
    make_copy(workdir, env)
    args = ["preset", name, "-n", f"{name}-{dataset}", *DATASET_ARGS[dataset]]
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "mnist_pipeline", *args],
        cwd=workdir, env={**env, "PYTHONPATH": str(workdir / "src")},
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{name} on {dataset} failed:\n{result.stdout}\n{result.stderr}")
    epochs = [float(s) for s in EPOCH_LINE.findall(result.stdout + result.stderr)]
    accuracy = json.loads((workdir / "metrics" / "eval.json").read_text())["accuracy"]
    md5 = hashlib.md5((workdir / "models" / "model.safetensors").read_bytes()).hexdigest()
    return accuracy, wall, sum(epochs) / max(len(epochs), 1), md5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", action="append", help="preset name(s); default: all")
    parser.add_argument("--dataset", action="append", choices=sorted(DATASET_ARGS))
    args = parser.parse_args()
    presets = load_presets(Path(__file__).resolve().parents[1] / "presets.yaml")
    rows = []
    for dataset in args.dataset or list(DATASET_ARGS):
        for name in args.preset or list(presets):
            with tempfile.TemporaryDirectory(prefix="preset-") as tmp:
                accuracy, wall, per_epoch, md5 = run_preset(name, dataset, Path(tmp))
            print(f"{name} on {dataset}: {accuracy:.4f}, {wall:.1f} s", flush=True)
            rows.append((name, dataset, f"{accuracy:.4f}", f"{wall:.1f}", f"{per_epoch:.2f}", md5))
    columns = ["preset", "dataset", "test accuracy", "dvc exp run wall s", "train s/epoch", "md5"]
    title = (
        f"## Presets, one command each on a fresh copy: {cpu_name()}, {os.cpu_count()} cores "
        f"(load avg {os.getloadavg()[0]:.2f} at the end)"
    )
    write_results("presets", f"{title}\n\n{markdown(rows, columns)}\n")


if __name__ == "__main__":
    main()
