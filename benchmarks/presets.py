"""Measure the accuracy presets in ``presets.yaml`` on Fashion-MNIST and the embedded sample.

    .venv/bin/python benchmarks/presets.py [--preset cnn] [--dataset fashion-mnist]

Each preset is a set of ``train`` overrides on top of ``params.yaml``. For each preset and
dataset it trains in-process with ``mnist_pipeline.learning.training.train`` (exactly what the train
stage runs), then prints a markdown table — test accuracy, wall seconds and CPU seconds of
training — and the ``dvc exp run -S ...`` line that runs the same preset as a DVC
experiment. Timings are printed, never asserted.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from common import DATASETS as DATA
from common import FASHION_MIRROR, REPO, markdown
from mnist_pipeline.data.sources import IDX_FILES, fetch
from mnist_pipeline.data.splits import Split, read_raw_split
from mnist_pipeline.learning.config import TrainParams, parse_params
from mnist_pipeline.learning.training import train

EXP_DATA = {
    "fashion-mnist": (
        f"-S data.dataset=fashion-mnist -S data.source=mirror -S data.mirror={FASHION_MIRROR}"
    ),
    "mnist-embedded": "-S data.source=embedded",
}


def preset_params(overrides: dict[str, Any]) -> TrainParams:
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    return parse_params({**raw, "train": {**raw["train"], **overrides}}).train


def exp_line(name: str, overrides: dict[str, Any], dataset: str) -> str:
    sets = " ".join(
        f"-S 'train.{key}={list(value) if isinstance(value, list | tuple) else value}'"
        for key, value in overrides.items()
    )
    return f"dvc exp run -n {name}-{dataset} {EXP_DATA[dataset]} {sets}"


def load(dataset: str, workdir: Path) -> tuple[Split, Split]:
    raw = workdir / dataset
    manifest = fetch(DATA[dataset], raw)
    train_split, test_split = (
        read_raw_split(raw, *IDX_FILES[s], manifest) for s in ("train", "test")
    )
    return train_split, test_split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", action="append", help="preset name(s); default: all")
    parser.add_argument("--dataset", action="append", choices=sorted(DATA), help="default: both")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    presets = yaml.safe_load((REPO / "presets.yaml").read_text())
    names = args.preset or list(presets)
    datasets = args.dataset or list(DATA)
    rows = []
    with tempfile.TemporaryDirectory(prefix="presets-") as tmp:
        for dataset in datasets:
            train_split, test_split = load(dataset, Path(tmp))
            for name in names:
                params = preset_params(presets[name])
                wall, cpu = time.perf_counter(), time.process_time()
                result = train(params, train_split, test_split)
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                rows.append((name, dataset, result.history[-1].accuracy, wall, cpu))
                print(f"{name} on {dataset}: {rows[-1][2]:.4f} in {wall:.1f} s ({cpu:.1f} CPU-s)")
    cells = [(n, d, f"{acc:.4f}", f"{wall:.1f}", f"{cpu:.1f}") for n, d, acc, wall, cpu in rows]
    columns = ["preset", "dataset", "test accuracy", "train wall s", "train CPU s"]
    print(f"\n{markdown(cells, columns)}")
    print()
    for name in names:
        for dataset in datasets:
            print(exp_line(name, presets[name], dataset))


if __name__ == "__main__":
    main()
