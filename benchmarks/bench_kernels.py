"""What portable kernels cost: s/epoch of the seed config, the mlp and the cnn presets under
``train.kernels: portable`` and ``native``, side by side on Fashion-MNIST 60k/10k.

    .venv/bin/python benchmarks/bench_kernels.py [--epochs 2] [--models seed,mlp,cnn]

torch fixes its kernels when it first computes, so every (model, kernels) pair trains in a
fresh process (``--one MODEL KERNELS`` is that child); pairs alternate so that drifting
load hits both modes alike. Prints a markdown table and writes it to
``benchmarks/results/kernels.md``; never asserts timings.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from common import DATASETS, REPO, markdown, write_results
from mnist_pipeline.core.runtime import KERNELS


def one(model: str, kernels: str, epochs: int) -> dict[str, object]:
    """Train one preset in this process (the child's job); its per-epoch seconds."""
    from mnist_pipeline.core.runtime import configure_torch

    configure_torch(1, kernels)  # before any tensor op
    from mnist_pipeline.data.sources import IDX_FILES, fetch
    from mnist_pipeline.data.splits import read_raw_split
    from mnist_pipeline.learning.config import TrainParams
    from mnist_pipeline.learning.training import train

    presets = yaml.safe_load((REPO / "presets.yaml").read_text())
    settings = {} if model == "seed" else presets[model]
    settings = {k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()}
    params = TrainParams(**{**settings, "epochs": epochs, "device": "cpu", "kernels": kernels})
    data = DATASETS["fashion-mnist"]
    with tempfile.TemporaryDirectory() as tmp:
        manifest = fetch(data, Path(tmp))
        train_split, test_split = (
            read_raw_split(Path(tmp), images, labels, manifest)
            for images, labels in IDX_FILES.values()
        )
    stamps: list[float] = []
    start = time.perf_counter()
    result = train(
        params, train_split, test_split, on_epoch=lambda _: stamps.append(time.perf_counter())
    )
    seconds = [b - a for a, b in itertools.pairwise([start, *stamps])]
    return {"seconds": seconds, "accuracy": result.history[-1].accuracy, "threads": params.threads}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--models", default="seed,mlp,cnn")
    parser.add_argument("--one", nargs=2, metavar=("MODEL", "KERNELS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(*args.one, args.epochs)))
        return
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    rows = {}
    for model in args.models.split(","):
        for kernels in KERNELS:
            print(f"{model}, {kernels} ...", flush=True)
            out = subprocess.run(
                [sys.executable, __file__, "--epochs", str(args.epochs), "--one", model, kernels],
                env=env, check=True, capture_output=True, text=True,
            ).stdout  # fmt: skip
            rows[model, kernels] = json.loads(out.splitlines()[-1])
    cells = []
    for model in args.models.split(","):
        p, n = rows[model, "portable"], rows[model, "native"]
        mean_p = sum(p["seconds"]) / len(p["seconds"])  # type: ignore[arg-type]
        mean_n = sum(n["seconds"]) / len(n["seconds"])  # type: ignore[arg-type]
        accuracies = f"{p['accuracy']:.4f} / {n['accuracy']:.4f}"
        cells.append(
            (
                model,
                p["threads"],
                f"{mean_p:.3f}",
                f"{mean_n:.3f}",
                f"{mean_p / mean_n:.2f}x",
                accuracies,
            )
        )
    title = (
        f"## Portable vs native kernels: Fashion-MNIST 60k/10k, {args.epochs} epochs "
        f"(load avg {os.getloadavg()[0]:.2f} at the end)"
    )
    columns = ["model", "threads", "portable s/epoch", "native s/epoch", "portable / native"]
    table = markdown(cells, [*columns, "accuracy portable / native"])
    write_results("kernels", f"{title}\n\n{table}\n")


if __name__ == "__main__":
    main()
