"""The notebook's training loop, made fast and repeatable.

Per epoch: a fresh permutation of the training set (seeded), minibatches sliced out of
one in-memory tensor, the loss from ``losses.LOSSES``, ``loss.backward()`` and the
notebook's SGD step ``p -= lr * p.grad``; then the mean minibatch loss and the accuracy
on the scoring split (the test set, as in the notebook). Same params -> same weights,
bit for bit, on the same CPU kind: seeds and thread count are set here.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from mnist_pipeline.data import Split, batch_indices
from mnist_pipeline.errors import PipelineError
from mnist_pipeline.losses import LOSSES, accuracy
from mnist_pipeline.models import ModelSpec, build_model
from mnist_pipeline.params import TrainParams

log = logging.getLogger(__name__)

EVAL_BATCH = 4096


@dataclass(frozen=True)
class EpochRecord:
    epoch: int
    train_loss: float
    test_accuracy: float


def configure_torch(threads: int) -> None:
    """Fix the thread count: float sums are only bit-repeatable at a fixed thread count."""
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)


def model_spec(params: TrainParams, in_features: int, num_classes: int) -> ModelSpec:
    hidden = params.hidden if params.model == "mlp" else ()
    return ModelSpec(params.model, in_features, num_classes, hidden, params.activation)


def sgd_step(parameters: Iterable[nn.Parameter], lr: float) -> None:
    """The notebook's minibatch SGD: ``p -= lr * p.grad``, then clear the gradient."""
    with torch.no_grad():
        for p in parameters:
            if p.grad is not None:
                p.sub_(p.grad, alpha=lr)
                p.grad = None


@torch.no_grad()
def predict_logits(model: nn.Module, images: Tensor, batch: int = EVAL_BATCH) -> Tensor:
    """Logits ``[N, C]`` for images ``[N, 784]``, in chunks to bound memory."""
    model.eval()
    out = torch.cat([model(chunk) for chunk in images.split(batch)])
    model.train()
    return out


def train(
    params: TrainParams,
    train_split: Split,
    score_split: Split,
    on_epoch: Callable[[EpochRecord], None] | None = None,
) -> tuple[nn.Module, ModelSpec, list[EpochRecord]]:
    """Train a fresh model from ``params``; returns it, its spec and the per-epoch history."""
    if params.batch_size > len(train_split):
        raise PipelineError(
            f"train.batch_size={params.batch_size} is larger than the training set "
            f"({len(train_split)} images); lower train.batch_size"
        )
    configure_torch(params.threads)
    torch.manual_seed(params.seed)
    spec = model_spec(params, train_split.images.shape[1], train_split.num_classes)
    model = build_model(spec)
    loss_fn = LOSSES[params.loss]
    shuffle = torch.Generator().manual_seed(params.seed)
    x, y = train_split.images, train_split.labels
    history: list[EpochRecord] = []
    for epoch in range(1, params.epochs + 1):
        total, steps = 0.0, 0
        for steps, idx in enumerate(batch_indices(len(y), params.batch_size, shuffle), 1):
            loss = loss_fn(model(x[idx]), y[idx])
            value = loss.item()
            if not math.isfinite(value):
                raise PipelineError(
                    f"train loss became {value} at epoch {epoch}, step {steps}: training "
                    f"diverged; lower train.lr (now {params.lr})"
                )
            loss.backward()
            sgd_step(model.parameters(), params.lr)
            total += value
        record = EpochRecord(
            epoch,
            total / steps,
            accuracy(predict_logits(model, score_split.images), score_split.labels),
        )
        log.info(
            "epoch %d/%d: train loss %.4f, test accuracy %.4f",
            epoch,
            params.epochs,
            record.train_loss,
            record.test_accuracy,
        )
        history.append(record)
        if on_epoch is not None:
            on_epoch(record)
    return model, spec, history
