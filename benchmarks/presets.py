"""The presets by the one command a user types, on a fresh copy of the project each: test
accuracy and ECE, wall seconds of the whole ``dvc exp run``, the train stage's s/epoch and the
model's md5 (native kernels repeat per CPU). ``default`` is params.yaml as it is;
``--kernels portable,native`` runs each under both, side by side: what portable costs.

    .venv/bin/python benchmarks/presets.py [--preset cnn] [--dataset fashion-mnist]
    .venv/bin/python benchmarks/presets.py --preset default --preset mlp --preset cnn \
        --kernels portable,native --epochs 3 --dataset fashion-mnist
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import re
import statistics
import sys
import tempfile
from pathlib import Path

from common import FASHION_MIRROR, REPO, environment, make_copy, timed, write_results
from mnist_pipeline.tools.presets import load_presets

DATASET_ARGS = {
    "fashion-mnist": [
        "-S",
        "data.dataset=fashion-mnist",
        "-S",
        "data.source=mirror",
        "-S",
        f"data.mirror={FASHION_MIRROR}",
    ],
    "mnist-embedded": ["-S", "data.source=embedded"],
}
EPOCH_LINE = re.compile(r"epoch \d+/\d+: .*\((\d+\.\d+) s\)")


def run_preset(name: str, sets: list[str], copy: Path) -> tuple[float, list[str]]:
    """Train s/epoch and the cells (test accuracy, wall s, s/epoch, model md5) of preset
    ``name`` with ``sets`` (``-S`` arguments of ``dvc exp run``), run in a fresh copy."""
    env = environment()
    make_copy(copy, env)
    env["PYTHONPATH"] = str(copy / "src")
    tool = ["dvc", "exp", "run"] if name == "default" else ["mnist_pipeline", "preset", name]
    wall, done = timed([sys.executable, "-m", *tool, *sets], copy, env)
    epochs = [float(s) for s in EPOCH_LINE.findall(done.stdout + done.stderr)] or [0.0]
    metrics = json.loads((copy / "metrics" / "eval.json").read_text())
    md5 = hashlib.md5((copy / "models" / "model.safetensors").read_bytes()).hexdigest()
    per_epoch = statistics.mean(epochs)
    cells = [f"{metrics['accuracy']:.4f}", f"{metrics['ece']:.4f}", f"{wall:.1f}"]
    return per_epoch, [*cells, f"{per_epoch:.2f}", md5]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", action="append", help="a preset or default (default: all)")
    parser.add_argument("--dataset", action="append", choices=sorted(DATASET_ARGS))
    parser.add_argument("--kernels", help="comma-separated train.kernels (default: the preset's)")
    parser.add_argument("--epochs", type=int, help="train.epochs for every run")
    args = parser.parse_args()
    presets = args.preset or list(load_presets(REPO / "presets.yaml"))
    epochs = ["-S", f"train.epochs={args.epochs}"] if args.epochs else []
    rows = []
    for dataset, name in itertools.product(args.dataset or list(DATASET_ARGS), presets):
        first = None
        for kernels in args.kernels.split(",") if args.kernels else [""]:
            chosen = ["-S", f"train.kernels={kernels}"] if kernels else []
            with tempfile.TemporaryDirectory(prefix="preset-") as tmp:
                per_epoch, cells = run_preset(
                    name, [*DATASET_ARGS[dataset], *epochs, *chosen], Path(tmp)
                )
            first = first or per_epoch
            ratio = f"{per_epoch / max(first, 1e-9):.2f}x"
            rows.append([name, dataset, kernels or "the preset's", *cells, ratio])
            print(" ".join(rows[-1]), flush=True)
    columns = ["preset", "dataset", "kernels", "test accuracy", "test ECE", "dvc exp run wall s"]
    columns += ["train s/epoch", "md5", "s/epoch vs the first kernels"]
    write_results("presets", "Presets, one command each on a fresh copy", (rows, columns))


if __name__ == "__main__":
    main()
