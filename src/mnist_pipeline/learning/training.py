"""The notebook's training loop, made fast and repeatable.

Per epoch: a fresh permutation of the training set (seeded), minibatches gathered from
one in-memory tensor, the loss from ``losses.LOSSES``, gradients by autograd or by the
hand-derived backward pass (``train.gradients: manual``, ``backprop.ManualBackprop``; the
notebook's own setup runs as ``backprop.NotebookEpoch``), and the update: the notebook's
SGD step ``p -= lr * grad`` (``optim.SGD``; momentum and weight decay are optional), or
Adam. After each epoch: the mean minibatch loss and the accuracy on the scoring split —
the test set, as in the notebook, or a held-out slice of train when
``train.val_fraction > 0``.

Data and model move to the device once (``train.device``); same params -> same weights,
bit for bit, on the same CPU kind: seeds and thread count are set here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pandas as pd
import torch
from torch import Tensor, nn

from mnist_pipeline.core.errors import PipelineError
from mnist_pipeline.core.runtime import configure_torch, resolve_device
from mnist_pipeline.data.splits import Split
from mnist_pipeline.learning import distributed
from mnist_pipeline.learning.backprop import ManualBackprop, NotebookEpoch
from mnist_pipeline.learning.config import TrainParams
from mnist_pipeline.learning.losses import LOSSES, one_hot
from mnist_pipeline.learning.models import MODELS, ModelSpec, build_model, predict_logits
from mnist_pipeline.learning.optim import OPTIMIZERS, SGD

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EpochRecord:
    epoch: int
    train_loss: float
    accuracy: float  # on the scoring split: test set, or the held-out val slice


@dataclass(frozen=True)
class TrainResult:
    model: nn.Module
    spec: ModelSpec
    history: list[EpochRecord]
    scored_on: str  # "test" or "val"
    seconds_per_epoch: list[float]  # wall time, for logs only (never in an artifact)


Optimizer = SGD | torch.optim.Optimizer


def make_optimizer(params: TrainParams, model: nn.Module) -> Optimizer:
    """``train.optimizer`` from ``optim.OPTIMIZERS`` over the model's parameters."""
    build = OPTIMIZERS[params.optimizer]
    return build(list(model.parameters()), params.lr, params.momentum, params.weight_decay)


def accuracy(scores: Tensor, labels: Tensor) -> float:
    """Share of rows whose highest score is the label (scores may be logits or probs)."""
    return float((scores.argmax(dim=1) == labels).float().mean())


def epoch_order(n: int, generator: torch.Generator, device: torch.device | str = "cpu") -> Tensor:
    """A fresh random permutation of ``range(n)``: the order of one epoch's samples.

    Drawn on the CPU (the same order on every device) and moved to ``device`` once per
    epoch. Consecutive ``batch_size`` slices of it are the epoch's minibatches (the last
    may be short), as the notebook's ``data_iter`` reshuffles every epoch.
    """
    return torch.randperm(n, generator=generator).to(device)


def scored_on(params: TrainParams) -> str:
    """Which split the per-epoch accuracy is measured on: ``test`` (the notebook) or ``val``."""
    return "val" if params.val_fraction > 0 else "test"


def holdout(split: Split, fraction: float, seed: int) -> tuple[Split, Split]:
    """Split off a seeded random ``fraction`` of ``split`` as a validation set."""
    n_val = round(len(split) * fraction)
    if n_val < 1 or n_val >= len(split):
        raise PipelineError(
            f"train.val_fraction={fraction} leaves {n_val} of {len(split)} images for "
            "validation; choose a fraction that keeps both parts non-empty"
        )
    order = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed + 1))
    return split.subset(order[n_val:].numpy()), split.subset(order[:n_val].numpy())


def make_step(
    params: TrainParams, model: nn.Module, optimizer: Optimizer, ctx: distributed.Context
) -> Callable[[Tensor, Tensor], Tensor]:
    """One training step on a global minibatch ``x [B, 784]``; returns its loss.

    ``y`` is the labels ``[B]`` for autograd, the one-hot rows ``[B, C]`` for the manual
    engine (gathered with ``x``, so no step builds them).

    In a single process that is the notebook's step. Under torchrun each rank computes
    on its shard and the step still equals the single-process one (see ``distributed``);
    the returned loss is this rank's share, ``loss_r * shard_size / B``, which sums over
    ranks to the global batch loss.
    """
    if params.gradients == "manual":
        engine = ManualBackprop(model, params.output, params.loss)
        parameters = list(model.parameters())

        def apply(grads: list[Tensor]) -> None:
            if isinstance(optimizer, SGD):
                optimizer.step(grads)
                return
            for p, grad in zip(parameters, grads, strict=True):
                p.grad = grad
            optimizer.step()

        @torch.no_grad()
        def manual_step(x: Tensor, target: Tensor) -> Tensor:
            xs, ts = distributed.shard(x, ctx), distributed.shard(target, ctx)
            loss, grads = engine.gradients(xs, ts)
            if not ctx.active:
                apply(grads)
                return loss
            weight = len(ts) / len(target)
            apply([distributed.sum_(g.mul_(weight), ctx) for g in grads])
            return loss.mul_(weight)

        return manual_step

    # DDP averages gradients over ranks; scaling each rank's loss by world * n_r / B turns
    # that average into the exact global-batch gradient even for a short last batch.
    forward = nn.parallel.DistributedDataParallel(model) if ctx.active else model
    loss_fn = LOSSES[params.output][params.loss]

    def autograd_step(x: Tensor, y: Tensor) -> Tensor:
        xs, ys = distributed.shard(x, ctx), distributed.shard(y, ctx)
        loss = loss_fn(forward(xs), ys)
        if ctx.active:
            loss = loss * (len(ys) / len(y))
            (loss * ctx.world).backward()
        else:
            loss.backward()
        optimizer.step()
        if isinstance(optimizer, torch.optim.Optimizer):
            optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    return autograd_step


def make_epoch(
    params: TrainParams, model: nn.Module, optimizer: Optimizer, ctx: distributed.Context, n: int
) -> Callable[[Tensor, Tensor, Tensor], Tensor]:
    """One epoch on ``x``, ``y`` in ``order``, returning the per-step losses ``[S]``.

    The notebook's own setup (one linear layer, softmax, mse, hand-derived gradients, plain
    SGD, one process: ``NotebookEpoch.fits``) runs as ``backprop.NotebookEpoch``; everything
    else runs ``make_step`` on the epoch's minibatches: consecutive ``batch_size`` slices of
    ``order``, gathered one at a time (no shuffled copy of the epoch: memory stays the data
    once).
    """
    plain_sgd = isinstance(optimizer, SGD) and not (optimizer.momentum or optimizer.weight_decay)
    manual = params.gradients == "manual" and plain_sgd and not ctx.active
    if manual and NotebookEpoch.fits(model, params.output, params.loss):
        return NotebookEpoch(model, params.lr, params.batch_size, n)
    step = make_step(params, model, optimizer, ctx)
    return lambda x, y, order: torch.stack(
        [step(x.index_select(0, i), y.index_select(0, i)) for i in order.split(params.batch_size)]
    )


def train(
    params: TrainParams,
    train_split: Split,
    test_split: Split,
    on_epoch: Callable[[EpochRecord], None] | None = None,
) -> TrainResult:
    """Train a fresh model from ``params``; score ``test_split`` per epoch unless a
    validation slice is held out (``train.val_fraction``)."""
    configure_torch(params.threads, params.kernels)
    device = resolve_device(params.device)
    if params.val_fraction > 0:
        train_split, test_split = holdout(train_split, params.val_fraction, params.seed)
    n = len(train_split)
    if params.batch_size > n:
        raise PipelineError(
            f"train.batch_size={params.batch_size} is larger than the training set "
            f"({n} images); lower train.batch_size"
        )
    ctx = distributed.init(device)
    torch.manual_seed(params.seed)  # same seed on every rank: same init, same order
    settings = {key: getattr(params, key) for key in MODELS[params.model].settings}
    spec = ModelSpec(params.model, train_split.images.shape[1], train_split.num_classes, **settings)
    model = build_model(spec).to(device)
    optimizer = make_optimizer(params, model)
    run_epoch = make_epoch(params, model, optimizer, ctx, n)
    x, y = (torch.from_numpy(a).to(device) for a in (train_split.images, train_split.labels))
    if params.gradients == "manual":  # the engine takes one-hot rows, gathered with x
        y = one_hot(y, train_split.num_classes, x.dtype)  # [N] -> [N, C]
    score_x, score_y = (
        torch.from_numpy(a).to(device) for a in (test_split.images, test_split.labels)
    )
    shuffle = torch.Generator().manual_seed(params.seed)

    history: list[EpochRecord] = []
    seconds: list[float] = []
    for epoch in range(1, params.epochs + 1):
        start = time.perf_counter()
        # Per-step losses stay device tensors: no host sync inside the loop.
        order = epoch_order(n, shuffle, device)
        losses = distributed.sum_(run_epoch(x, y, order), ctx)
        finite = torch.isfinite(losses)
        if not bool(finite.all()):
            bad = int((~finite).nonzero()[0])
            raise PipelineError(
                f"train loss became {losses[bad].item()} at epoch {epoch}, step {bad + 1}: "
                f"training diverged; lower train.lr (now {params.lr})"
            )
        record = EpochRecord(
            epoch,
            float(losses.double().mean()),
            accuracy(predict_logits(model, score_x), score_y),
        )
        seconds.append(time.perf_counter() - start)
        history.append(record)
        if ctx.rank > 0:  # rank 0 alone logs and writes
            continue
        log.info(
            "epoch %d/%d: train loss %.4f, %s accuracy %.4f (%.2f s)",
            epoch,
            params.epochs,
            record.train_loss,
            scored_on(params),
            record.accuracy,
            seconds[-1],
        )
        if on_epoch is not None:
            on_epoch(record)
    distributed.finish(ctx)
    return TrainResult(model.cpu(), spec, history, scored_on(params), seconds)


def history_frame(history: Sequence[EpochRecord], scored_on: str) -> pd.DataFrame:
    """The per-epoch log: ``epoch, train_loss, test_accuracy`` (or ``val_accuracy``)."""
    return pd.DataFrame(
        {
            "epoch": [r.epoch for r in history],
            "train_loss": [round(r.train_loss, 6) for r in history],
            f"{scored_on}_accuracy": [round(r.accuracy, 6) for r in history],
        }
    )
