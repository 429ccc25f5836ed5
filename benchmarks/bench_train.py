"""The course notebook's training loop against ``learning.training.train``, side by side.

    .venv/bin/python benchmarks/bench_train.py --dataset mnist-embedded          # 10 epochs
    .venv/bin/python benchmarks/bench_train.py --dataset fashion-mnist --threads 1,2

Both train the notebook's setup (linear, MSE on softmax, lr 0.01, batch 16, seed 0) on the same
files in one process. The notebook loop is as written, slow parts included (PIL images from
torchvision, per-sample conversion in ``data_iter``, per-batch test accuracy with autograd on).
Seconds per epoch: training and the test pass, not loading data.
"""

from __future__ import annotations

import argparse
import itertools
import random
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision.datasets
from torch import nn

from common import read_splits, write_results
from mnist_pipeline.core.runtime import KERNELS, configure_torch
from mnist_pipeline.data.sources import ALL_FILES
from mnist_pipeline.learning.params import TrainParams
from mnist_pipeline.learning.training import train

# benchmark dataset -> (the notebook's torchvision dataset, default epochs)
NOTEBOOK = {"mnist-embedded": ("MNIST", 10), "fashion-mnist": ("FashionMNIST", 3)}
Row = tuple[str, int, list[float], float, float]  # loop, threads, s/epoch, loss, test accuracy


def data_iter(batch_size: int, db: Any) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The notebook's reader: shuffled indices, each sample converted from PIL on its own."""
    indices = list(range(len(db)))
    random.shuffle(indices)
    for i in range(0, len(db), batch_size):
        xs, ys = [], []
        for j in indices[i : i + batch_size]:
            img, lbl = db[j]
            xs.append(torch.from_numpy(np.array(img)).view(28 * 28).float() / 255.0)
            ys.append(torch.tensor(lbl))
        yield torch.stack(xs), torch.stack(ys)


def run_notebook(raw: Path, name: str, epochs: int, lr: float = 0.01) -> Row:
    """The notebook's model, ``mse``, ``sgd`` and loop over torchvision datasets that find
    ``raw``'s IDX files (linked where torchvision looks, so it never downloads)."""
    torch.manual_seed(0)
    random.seed(0)
    model = nn.Sequential(nn.Linear(28 * 28, 10), nn.Softmax(dim=1))
    seconds, losses, accuracies = [], [], []
    with tempfile.TemporaryDirectory() as root:
        (Path(root) / name / "raw").mkdir(parents=True)
        for file in ALL_FILES:
            (Path(root) / name / "raw" / file).symlink_to(raw.resolve() / file)
        db_train, db_test = (
            getattr(torchvision.datasets, name)(root, train=t) for t in (True, False)
        )
        for _ in range(epochs):
            start, losses, accuracies = time.perf_counter(), [], []
            for x, y in data_iter(16, db_train):
                loss = (torch.eye(10)[y] - model(x)).pow(2).sum(1).mean()
                loss.backward()
                for p in model.parameters():
                    p.data -= lr * p.grad
                    p.grad = None
                losses.append(loss.detach().item())
            for x, y in data_iter(16, db_test):
                accuracies.append((model(x).argmax(dim=1) == y).float().mean())
            seconds.append(time.perf_counter() - start)
    loss, accuracy = float(np.mean(losses)), float(np.mean(accuracies))
    return "notebook (data_iter + PIL)", 1, seconds, loss, accuracy


def run_ours(threads: int, gradients: str, epochs: int, splits: tuple[Any, Any]) -> Row:
    params = TrainParams(
        model="linear", loss="mse", optimizer="sgd", lr=0.01, batch_size=16, epochs=epochs,
        seed=0, threads=threads, gradients=gradients, device="cpu",
    )  # fmt: skip
    stamps, records = [time.perf_counter()], []

    def on_epoch(record: Any) -> None:
        stamps.append(time.perf_counter())
        records.append(record)

    train(params, *splits, on_epoch=on_epoch)
    seconds = [b - a for a, b in itertools.pairwise(stamps)]
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
    with tempfile.TemporaryDirectory() as raw:
        splits = read_splits(args.dataset, Path(raw))
        if not args.skip_notebook:
            print(f"notebook loop: {epochs} epochs ...", flush=True)
            rows.append(run_notebook(Path(raw), torchvision_name, epochs))
        for gradients, threads in itertools.product(
            args.gradients.split(","), map(int, args.threads.split(","))
        ):
            print(f"ours, {gradients}, threads={threads}: {epochs} epochs ...", flush=True)
            rows.append(run_ours(threads, gradients, epochs, splits))
    base = statistics.mean(rows[0][2])
    cells = [
        (loop, threads, f"{statistics.mean(s):.3f}", f"{statistics.median(s):.3f}",
         f"{loss:.4f}", f"{acc:.4f}", f"{base / statistics.mean(s):.1f}x")
        for loop, threads, s, loss, acc in rows
    ]  # fmt: skip
    columns = ["loop", "threads", "s/epoch (mean)", "s/epoch (median)", "final train loss",
               "final test acc", f"speed-up vs {rows[0][0]}"]  # fmt: skip
    title = f"bench_train: {args.dataset}, {epochs} epochs, torch {torch.__version__}"
    name = f"train-{args.dataset}-{epochs}ep"
    write_results(name, f"{title}, {args.kernels} kernels", (cells, columns))


if __name__ == "__main__":
    main()
