"""The course notebook's training loop, re-created as the baseline for ``bench_train.py``:
the notebook as written, slow parts included: a torchvision dataset object that hands
out PIL images, the ``data_iter`` generator that shuffles indices with python ``random``
and converts every sample from PIL one at a time, the ``Linear`` model with softmax in
``forward``, the notebook's ``mse`` and ``sgd``, and the test accuracy as the mean of
per-batch (16) accuracies, computed with autograd on, as the notebook does.
"""

from __future__ import annotations

import random
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision.datasets
from torch import nn

from mnist_pipeline.data.sources import ALL_FILES

TORCHVISION_CLASSES = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST", "kmnist": "KMNIST"}


def torchvision_datasets(raw_dir: Path, dataset: str, root: Path) -> tuple[Any, Any]:
    """``(db_train, db_test)`` as the notebook builds them, over ``raw_dir``'s IDX files.

    ``root/<ClassName>/raw/`` gets symlinks to the four uncompressed files, so torchvision
    finds them and never downloads.
    """
    cls = getattr(torchvision.datasets, TORCHVISION_CLASSES[dataset])
    raw = root / cls.__name__ / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for name in ALL_FILES:
        link = raw / name
        if not link.exists():
            link.symlink_to(Path(raw_dir).resolve() / name)
    db_train = cls(root=str(root), train=True, transform=None, target_transform=None)
    db_test = cls(root=str(root), train=False, transform=None, target_transform=None)
    return db_train, db_test


def to1hot(labels: torch.Tensor) -> torch.Tensor:
    """The notebook's one-hot encoding."""
    return torch.eye(10)[labels]


def data_iter(batch_size: int, db: Any) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The notebook's reader: shuffled indices, each sample converted from PIL on its own."""
    n = len(db)
    indices = list(range(n))
    random.shuffle(indices)
    for i in range(0, n, batch_size):
        xs, ys = [], []
        for j in indices[i : min(i + batch_size, n)]:
            img, lbl = db[j]
            img = torch.from_numpy(np.array(img))  # PIL -> numpy -> tensor
            img = img.view(28 * 28)
            img = img.float() / 255.0
            xs.append(img)
            ys.append(torch.tensor(lbl))
        yield torch.stack(xs), torch.stack(ys)


class Linear(nn.Module):
    """The notebook's model: one linear layer with softmax inside ``forward``."""

    def __init__(self, input_dim: int) -> None:
        super().__init__()
        self.layer1 = nn.Linear(input_dim, 10)
        self.softmax = nn.Softmax(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.softmax(self.layer1(x))


def sgd(model: nn.Module, lr: float) -> None:
    """The notebook's minibatch SGD."""
    for p in model.parameters():
        p.data -= lr * p.grad
        p.grad = None


def mse(y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The notebook's MSE loss on probabilities against one-hot labels."""
    loss_per_sample = (to1hot(y) - y_hat).pow(2).sum(1)
    return loss_per_sample.mean()


def accuracy(y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (y_hat.argmax(dim=1) == y).float().mean()


def run_notebook_loop(
    raw_dir: Path,
    dataset: str,
    epochs: int,
    lr: float = 0.01,
    batch_size: int = 16,
    seed: int = 0,
    threads: int = 1,
) -> list[tuple[int, float, float, float]]:
    """Train as the notebook does; ``[(epoch, train_loss, test_acc, seconds), ...]``.

    ``seconds`` is one epoch of training plus its test pass; building the torchvision
    dataset objects (reading the IDX files) happens before the clock starts.
    """
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    random.seed(seed)
    history: list[tuple[int, float, float, float]] = []
    with tempfile.TemporaryDirectory(prefix="notebook-root-") as root:
        db_train, db_test = torchvision_datasets(Path(raw_dir), dataset, Path(root))
        model = Linear(28 * 28)
        for epoch in range(epochs):
            start = time.perf_counter()
            losses = []
            for x_batch, y_batch in data_iter(batch_size=batch_size, db=db_train):
                yhat = model(x_batch)
                loss = mse(yhat, y_batch)
                loss.backward()
                sgd(model, lr)
                losses.append(loss.detach().item())
            acc = []
            for x_batch, y_batch in data_iter(batch_size=16, db=db_test):
                yhat = model(x_batch)
                acc.append(accuracy(yhat, y_batch))
            seconds = time.perf_counter() - start
            history.append((epoch + 1, float(np.mean(losses)), float(np.mean(acc)), seconds))
    return history
