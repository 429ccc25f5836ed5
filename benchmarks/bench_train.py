"""Time the notebook's training loop against ``learning.training.train``, side by side.

    .venv/bin/python benchmarks/bench_train.py --dataset mnist-embedded          # 10 epochs
    .venv/bin/python benchmarks/bench_train.py --dataset fashion-mnist --threads 1,2
    .venv/bin/python benchmarks/bench_train.py --dataset fashion-mnist --epochs 10

Both loops train the notebook's setup (linear model, MSE on softmax, lr 0.01, batch 16,
seed 0) on the same IDX files, in one process, one after the other. Seconds per epoch
cover training plus the per-epoch test pass; loading data is excluded from both (the
notebook's torchvision dataset objects are built before its clock starts; our
``read_raw_split`` is timed and reported on its own). ``--threads`` sweeps our loop's
torch thread count; the notebook loop runs with ``--notebook-threads`` (default 1).

Prints a markdown table and writes it to ``benchmarks/results/<name>.md``. Timings are
printed, never asserted: they are noisy on a shared machine.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import os
import platform
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from common import DATASETS, markdown, write_results
from mnist_pipeline.core.runtime import KERNELS, configure_torch
from mnist_pipeline.data.sources import IDX_FILES, fetch
from mnist_pipeline.data.splits import Split, read_raw_split
from mnist_pipeline.learning.params import TrainParams
from mnist_pipeline.learning.training import EpochRecord, train
from notebook_loop import run_notebook_loop

SUMMARY_COLUMNS = [
    *("loop", "threads", "s/epoch (mean)", "median s/epoch", "min s/epoch"),
    *("final train loss", "final test acc", "notebook/ours (mean)", "notebook/ours (median)"),
]
# benchmark dataset -> (torchvision dataset the notebook loop reads, default epochs)
NOTEBOOK = {"mnist-embedded": ("mnist", 10), "fashion-mnist": ("fashion-mnist", 3)}


@dataclass(frozen=True)
class Row:
    loop: str
    threads: int
    epoch_seconds: list[float]
    accuracies: list[float]
    final_loss: float

    @property
    def per_epoch(self) -> float:
        return sum(self.epoch_seconds) / len(self.epoch_seconds)

    @property
    def median(self) -> float:
        return statistics.median(self.epoch_seconds)


def load_ours(raw_dir: Path, manifest: dict[str, object]) -> tuple[Split, Split, float]:
    """Our tensors from the raw IDX files, and how long that took."""
    start = time.perf_counter()
    splits = [read_raw_split(raw_dir, imgs, lbls, manifest) for imgs, lbls in IDX_FILES.values()]
    return splits[0], splits[1], time.perf_counter() - start


def run_ours(
    threads: int,
    gradients: str,
    epochs: int,
    train_split: Split,
    test_split: Split,
    kernels: str = "portable",
) -> Row:
    params = TrainParams(
        model="linear",
        loss="mse",
        optimizer="sgd",
        lr=0.01,
        batch_size=16,
        epochs=epochs,
        seed=0,
        threads=threads,
        gradients=gradients,
        device="cpu",  # a CPU benchmark, even where a GPU is present
        kernels=kernels,
    )
    stamps: list[float] = []
    records: list[EpochRecord] = []

    def on_epoch(record: EpochRecord) -> None:
        stamps.append(time.perf_counter())
        records.append(record)

    start = time.perf_counter()
    train(params, train_split, test_split, on_epoch=on_epoch)
    edges = [start, *stamps]
    seconds = [b - a for a, b in itertools.pairwise(edges)]
    return Row(
        f"ours ({gradients} gradients)",
        threads,
        seconds,
        [r.accuracy for r in records],
        records[-1].train_loss,
    )


def run_notebook(raw_dir: Path, dataset: str, epochs: int, threads: int) -> Row:
    history = run_notebook_loop(raw_dir, dataset, epochs, threads=threads)
    return Row(
        "notebook (data_iter + PIL)",
        threads,
        [h[3] for h in history],
        [h[2] for h in history],
        history[-1][1],
    )


def render(
    name: str,
    epochs: int,
    counts: tuple[int, int],
    rows: list[Row],
    notebook_load: float,
    our_load: float,
) -> str:
    baseline = rows[0].per_epoch
    summary = []
    for row in rows:
        ratios = ("1.0 (baseline)",) * 2
        if row is not rows[0]:
            ratios = (f"{baseline / row.per_epoch:.1f}x", f"{rows[0].median / row.median:.1f}x")
        times = (f"{row.per_epoch:.3f}", f"{row.median:.3f}", f"{min(row.epoch_seconds):.3f}")
        scores = (f"{row.final_loss:.4f}", f"{row.accuracies[-1]:.4f}")
        summary.append((row.loop, row.threads, *times, *scores, *ratios))
    epochs_columns = ["loop", "threads", *(str(e) for e in range(1, epochs + 1))]
    per_epoch = {
        "Test accuracy per epoch:": [
            (r.loop, r.threads, *(f"{a:.4f}" for a in r.accuracies)) for r in rows
        ],
        "Seconds per epoch:": [
            (r.loop, r.threads, *(f"{t:.3f}" for t in r.epoch_seconds)) for r in rows
        ],
    }
    lines = [
        f"## bench_train: {name}, {epochs} epochs ({counts[0]} train / {counts[1]} test)",
        "",
        f"torch {torch.__version__} ({torch.backends.cpu.get_cpu_capability()} kernels), "
        f"{os.cpu_count()} CPUs, {platform.processor() or '?'}; "
        f"load avg at end {os.getloadavg()[0]:.2f}",
        "",
        markdown(summary, SUMMARY_COLUMNS),
        "",
        f"Data loading (excluded above): notebook torchvision datasets {notebook_load:.3f} s; "
        f"ours read_raw_split (IDX -> float tensors) {our_load:.3f} s.",
    ]
    for title, table in per_epoch.items():
        lines += ["", title, "", markdown(table, epochs_columns)]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=sorted(NOTEBOOK), default="mnist-embedded")
    parser.add_argument("--epochs", type=int, help="default: 10 embedded, 3 fashion-mnist")
    parser.add_argument("--threads", default="1", help="our loop's thread counts, e.g. 1,2")
    parser.add_argument(
        "--gradients", default="manual,autograd", help="our backward passes, e.g. manual"
    )
    parser.add_argument("--notebook-threads", type=int, default=1)
    parser.add_argument(
        "--kernels", choices=KERNELS, default="portable", help="for both loops (one process)"
    )
    parser.add_argument("--skip-notebook", action="store_true", help="time only our loop")
    parser.add_argument("--name", help="results file name (default: dataset-epochs)")
    args = parser.parse_args()

    logging.basicConfig(level=logging.WARNING)
    data_params, (tv_name, default_epochs) = DATASETS[args.dataset], NOTEBOOK[args.dataset]
    epochs = args.epochs or default_epochs
    threads = [int(t) for t in args.threads.split(",") if t.strip()]
    name = args.name or f"train-{args.dataset}-{epochs}ep"

    configure_torch(1, args.kernels)  # before any tensor op: the notebook loop runs under it too
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        raw_dir = Path(tmp)
        manifest = fetch(data_params, raw_dir)
        train_split, test_split, our_load = load_ours(raw_dir, manifest)

        rows: list[Row] = []
        notebook_load = float("nan")
        if not args.skip_notebook:
            from notebook_loop import torchvision_datasets

            with tempfile.TemporaryDirectory(prefix="tv-root-") as root:
                start = time.perf_counter()
                torchvision_datasets(raw_dir, tv_name, Path(root))
                notebook_load = time.perf_counter() - start
            print(f"notebook loop: {epochs} epochs ...", flush=True)
            rows.append(run_notebook(raw_dir, tv_name, epochs, args.notebook_threads))
        for gradients in args.gradients.split(","):
            for t in threads:
                print(f"ours, {gradients}, threads={t}: {epochs} epochs ...", flush=True)
                rows.append(run_ours(t, gradients, epochs, train_split, test_split, args.kernels))

    table = render(
        args.dataset,
        epochs,
        (len(train_split), len(test_split)),
        rows,
        notebook_load,
        our_load,
    )
    write_results(name, table)


if __name__ == "__main__":
    main()
