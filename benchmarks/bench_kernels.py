"""What the portable kernels cost: s/epoch of the seed config, the mlp and the cnn presets
(each at its own ``train.threads``) under ``train.kernels: portable`` and ``native`` on
Fashion-MNIST 60k/10k. torch fixes its kernels when it first computes, so each pair trains
in a fresh process (``--one MODEL KERNELS``). Prints a markdown table (also
``benchmarks/results/kernels.md``); never asserts timings.

    .venv/bin/python benchmarks/bench_kernels.py [--epochs 3] [--models seed,mlp,cnn]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import DATASETS, REPO, cpu_name, markdown, write_results
from mnist_pipeline.core.runtime import KERNELS
from mnist_pipeline.tools.presets import load_presets


def one(model: str, kernels: str, epochs: int) -> dict[str, object]:
    """Train one preset (``seed``: params.yaml's config) in this process: s/epoch, accuracy."""
    from mnist_pipeline.core.runtime import configure_torch

    settings = {} if model == "seed" else load_presets(REPO / "presets.yaml")[model]
    configure_torch(settings.get("threads", 1), kernels)  # before any tensor op
    from mnist_pipeline.data.sources import IDX_FILES, fetch
    from mnist_pipeline.data.splits import read_raw_split
    from mnist_pipeline.learning.params import TrainParams
    from mnist_pipeline.learning.training import train

    with tempfile.TemporaryDirectory() as tmp:
        manifest = fetch(DATASETS["fashion-mnist"], Path(tmp))
        train_split, test_split = (
            read_raw_split(Path(tmp), images, labels, manifest)
            for images, labels in IDX_FILES.values()
        )
    params = TrainParams(**{**settings, "epochs": epochs, "device": "cpu", "kernels": kernels})
    start = time.perf_counter()
    result = train(params, train_split, test_split)
    seconds = (time.perf_counter() - start) / epochs
    return {"seconds": seconds, "accuracy": result.history[-1].accuracy, "threads": params.threads}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--models", default="seed,mlp,cnn")
    parser.add_argument("--one", nargs=2, metavar=("MODEL", "KERNELS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(*args.one, args.epochs)))
        return
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    cells = []
    for model in args.models.split(","):
        row = {}
        for kernels in KERNELS:
            print(f"{model}, {kernels} ...", flush=True)
            out = subprocess.run(
                [sys.executable, __file__, "--epochs", str(args.epochs), "--one", model, kernels],
                env=env, check=True, capture_output=True, text=True,
            ).stdout  # fmt: skip
            row[kernels] = json.loads(out.splitlines()[-1])
        portable, native = row["portable"], row["native"]
        ratio = portable["seconds"] / native["seconds"]
        accuracy = f"{portable['accuracy']:.4f} / {native['accuracy']:.4f}"
        cells.append((model, native["threads"], f"{portable['seconds']:.3f}",
                      f"{native['seconds']:.3f}", f"{ratio:.2f}x", accuracy))  # fmt: skip
    title = (
        f"## Portable vs native kernels: Fashion-MNIST 60k/10k, {args.epochs} epochs, "
        f"{cpu_name()}, {os.cpu_count()} cores (load avg {os.getloadavg()[0]:.2f} at the end)"
    )
    columns = ["model", "threads", "portable s/epoch", "native s/epoch", "portable / native",
               "accuracy portable / native"]  # fmt: skip
    write_results("kernels", f"{title}\n\n{markdown(cells, columns)}\n")


if __name__ == "__main__":
    main()
