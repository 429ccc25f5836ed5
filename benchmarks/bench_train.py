"""Time the notebook's training loop against ``learning.training.train``, side by side.

    .venv/bin/python benchmarks/bench_train.py --dataset mnist-embedded          # 10 epochs
    .venv/bin/python benchmarks/bench_train.py --dataset fashion-mnist --threads 1,2

Both loops train the notebook's setup (linear model, MSE on softmax, lr 0.01, batch 16,
seed 0) on the same IDX files, in one process, one after the other, under the same
kernels. Seconds per epoch cover training plus the per-epoch test pass; loading data is
excluded from both. ``--threads`` sweeps our loop's torch thread count (the notebook loop
runs on one). Prints a markdown table and writes it to ``benchmarks/results/``; timings
are printed, never asserted.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from common import DATASETS, cpu_name, markdown, write_results
from mnist_pipeline.core.runtime import KERNELS, configure_torch
from mnist_pipeline.data.sources import IDX_FILES, fetch
from mnist_pipeline.data.splits import Split, read_raw_split
from mnist_pipeline.learning.params import TrainParams
from mnist_pipeline.learning.training import EpochRecord, train
from notebook_loop import run_notebook_loop

# benchmark dataset -> (torchvision dataset the notebook loop reads, default epochs)
NOTEBOOK = {"mnist-embedded": ("mnist", 10), "fashion-mnist": ("fashion-mnist", 3)}
# (loop, threads, seconds per epoch, final train loss, final test accuracy)
Row = tuple[str, int, list[float], float, float]


def run_ours(threads: int, gradients: str, epochs: int, splits: tuple[Split, Split]) -> Row:
    params = TrainParams(
        model="linear", loss="mse", optimizer="sgd", lr=0.01, batch_size=16, epochs=epochs,
        seed=0, threads=threads, gradients=gradients, device="cpu",
    )  # fmt: skip
    stamps: list[float] = []
    records: list[EpochRecord] = []

    def on_epoch(record: EpochRecord) -> None:
        stamps.append(time.perf_counter())
        records.append(record)

    start = time.perf_counter()
    train(params, *splits, on_epoch=on_epoch)
    seconds = [b - a for a, b in itertools.pairwise([start, *stamps])]
    return f"ours ({gradients})", threads, seconds, records[-1].train_loss, records[-1].accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=sorted(NOTEBOOK), default="mnist-embedded")
    parser.add_argument("--epochs", type=int, help="default: 10 embedded, 3 fashion-mnist")
    parser.add_argument("--threads", default="1", help="our loop's thread counts, e.g. 1,2")
    parser.add_argument("--gradients", default="manual,autograd", help="e.g. manual")
    parser.add_argument("--kernels", choices=KERNELS, default="portable")
    parser.add_argument("--skip-notebook", action="store_true", help="time only our loop")
    args = parser.parse_args()
    torchvision_name, default_epochs = NOTEBOOK[args.dataset]
    epochs = args.epochs or default_epochs

    configure_torch(1, args.kernels)  # before any tensor op: the notebook loop runs under it too
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        raw_dir = Path(tmp)
        manifest = fetch(DATASETS[args.dataset], raw_dir)
        splits = tuple(read_raw_split(raw_dir, *files, manifest) for files in IDX_FILES.values())
        if not args.skip_notebook:
            print(f"notebook loop: {epochs} epochs ...", flush=True)
            history = run_notebook_loop(raw_dir, torchvision_name, epochs)
            seconds = [h[3] for h in history]
            rows.append(("notebook (data_iter + PIL)", 1, seconds, history[-1][1], history[-1][2]))
        for gradients in args.gradients.split(","):
            for threads in map(int, args.threads.split(",")):
                print(f"ours, {gradients}, threads={threads}: {epochs} epochs ...", flush=True)
                rows.append(run_ours(threads, gradients, epochs, splits))  # type: ignore[arg-type]

    base = statistics.mean(rows[0][2])
    cells = [
        (loop, threads, f"{statistics.mean(s):.3f}", f"{statistics.median(s):.3f}",
         f"{loss:.4f}", f"{acc:.4f}", f"{base / statistics.mean(s):.1f}x")
        for loop, threads, s, loss, acc in rows
    ]  # fmt: skip
    columns = ["loop", "threads", "s/epoch (mean)", "s/epoch (median)", "final train loss",
               "final test acc", f"speed-up vs {rows[0][0]}"]  # fmt: skip
    title = (
        f"## bench_train: {args.dataset}, {epochs} epochs, torch {torch.__version__} "
        f"({args.kernels} kernels), {cpu_name()}, load avg {os.getloadavg()[0]:.2f} at the end"
    )
    write_results(f"train-{args.dataset}-{epochs}ep", f"{title}\n\n{markdown(cells, columns)}\n")


if __name__ == "__main__":
    main()
