"""The notebook's training loop, made fast and repeatable: seeded epoch orders, minibatches
gathered from one in-memory tensor, autograd or hand-derived gradients (``backprop``), and
per epoch the mean loss and the test (or held-out val) accuracy. Same params -> same weights,
bit for bit, on the same CPU kind."""

from __future__ import annotations

import dataclasses
import logging
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from mnist_pipeline.core.errors import PipelineError
from mnist_pipeline.core.runtime import configure_torch, resolve_device
from mnist_pipeline.data.splits import Split
from mnist_pipeline.learning import distributed
from mnist_pipeline.learning.backprop import ManualBackprop, NotebookEpoch
from mnist_pipeline.learning.checkpoints import Checkpoint
from mnist_pipeline.learning.config import TrainParams
from mnist_pipeline.learning.losses import LOSSES, one_hot
from mnist_pipeline.learning.models import MODELS, ModelSpec, build_model, predict_logits
from mnist_pipeline.learning.optim import OPTIMIZERS, SGD
from mnist_pipeline.learning.schedules import Schedule

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EpochRecord:
    epoch: int
    train_loss: float  # the mean minibatch loss over the epoch
    accuracy: float  # on the scoring split: test set, or the held-out val slice
    lr: float  # the learning rate of this epoch
    train_accuracy: float | None = None  # with a val slice: on the whole training part
    val_loss: float | None = None  # with a val slice: the training loss on it


@dataclass(frozen=True)
class TrainResult:
    model: nn.Module  # the shipped weights (the best epoch's with ``keep: best``)
    spec: ModelSpec
    history: list[EpochRecord]
    scored_on: str  # "test" or "val"
    seconds_per_epoch: list[float]  # wall time of the epochs this run trained, logs only
    shipped: int  # the epoch whose weights ship
    stop_reason: str  # why training stopped, one phrase
    first_epoch: int = 1  # the first epoch this run trained (> 1 after a resume)


class Selection:
    """Which epoch ships (``keep: best``: the best ``monitor`` so far) and when to stop
    (``patience``: epochs without a strictly better score); without a val slice, the last."""

    def __init__(self, params: TrainParams) -> None:
        self.params = params
        self.best_epoch, self.best_score, self.since = 0, None, 0
        self.best_weights: dict[str, Tensor] | None = None
        self.stop_reason = ""

    def update(self, record: EpochRecord, model: nn.Module) -> None:
        if self.params.val_fraction == 0:
            return
        lower = self.params.monitor == "val_loss"
        score, best = record.val_loss if lower else record.accuracy, self.best_score
        if best is None or (score < best if lower else score > best):
            self.best_epoch, self.best_score, self.since = record.epoch, score, 0
            if self.params.keep == "best":
                self.best_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
            return
        self.since += 1
        if self.params.patience and self.since >= self.params.patience:
            self.stop_reason = (
                f"stopped early: {self.params.monitor} did not improve for "
                f"{self.since} epochs (train.patience {self.params.patience})"
            )

    def state_dict(self) -> dict[str, object]:
        return {key: value for key, value in vars(self).items() if key != "params"}

    def load_state_dict(self, state: dict[str, object]) -> None:
        vars(self).update(state)


Optimizer = SGD | torch.optim.Optimizer


def make_optimizer(params: TrainParams, model: nn.Module) -> Optimizer:
    build = OPTIMIZERS[params.optimizer]
    return build(list(model.parameters()), params.lr, params.momentum, params.weight_decay)


def accuracy(scores: Tensor, labels: Tensor) -> float:
    """Share of rows whose highest score is the label (scores may be logits or probs)."""
    return float((scores.argmax(dim=1) == labels).float().mean())


def epoch_order(n: int, generator: torch.Generator, device: torch.device | str = "cpu") -> Tensor:
    """One epoch's sample order, drawn on the CPU (the same on every device); its
    consecutive ``batch_size`` slices are the minibatches, as the notebook's ``data_iter``."""
    return torch.randperm(n, generator=generator).to(device)


def scored_on(params: TrainParams) -> str:
    return "val" if params.val_fraction > 0 else "test"


def holdout(split: Split, fraction: float, seed: int) -> tuple[Split, Split]:
    """Split off a stratified ``fraction`` of ``split`` as a validation set, fixed by ``seed``."""
    from sklearn.model_selection import train_test_split

    n_val = round(len(split) * fraction)
    if n_val < 1 or n_val >= len(split):
        raise PipelineError(
            f"train.val_fraction={fraction} leaves {n_val} of {len(split)} images for "
            "validation; choose a fraction that keeps both parts non-empty"
        )
    try:
        keep, val = train_test_split(
            np.arange(len(split)), test_size=n_val, random_state=seed, stratify=split.labels
        )
    except ValueError as err:  # a class too small to appear in both parts
        raise PipelineError(
            f"train.val_fraction={fraction}: cannot hold out a stratified slice of "
            f"{n_val} images ({str(err).splitlines()[0]}); choose a larger fraction"
        ) from err
    return split.subset(np.sort(keep)), split.subset(np.sort(val))


def make_step(
    params: TrainParams, model: nn.Module, optimizer: Optimizer, ctx: distributed.Context
) -> Callable[[Tensor, Tensor], Tensor]:
    """One step on a global minibatch (labels ``[B]`` for autograd, one-hot ``[B, C]`` for
    the manual engine); returns this rank's share of its loss, which sums over ranks."""
    if params.gradients == "manual":
        engine = ManualBackprop(model, params.output, params.loss)
        parameters = list(model.parameters())

        @torch.no_grad()
        def manual_step(x: Tensor, target: Tensor) -> Tensor:
            xs, ts = distributed.shard(x, ctx), distributed.shard(target, ctx)
            loss, grads = engine.gradients(xs, ts)
            if ctx.active:
                weight = len(ts) / len(target)
                grads = [distributed.sum_(g.mul_(weight), ctx) for g in grads]
                loss.mul_(weight)
            for p, grad in zip(parameters, grads, strict=True):
                p.grad = grad
            optimizer.step()  # optim.SGD clears p.grad
            return loss

        return manual_step

    # DDP averages gradients over ranks; scaling each rank's loss by world * n_r / B turns
    # that average into the exact global-batch gradient even for a short last batch.
    forward = nn.parallel.DistributedDataParallel(model) if ctx.active else model
    loss_fn = LOSSES[params.output][params.loss]

    def autograd_step(x: Tensor, y: Tensor) -> Tensor:
        xs, ys = distributed.shard(x, ctx), distributed.shard(y, ctx)
        loss = loss_fn(forward(xs), ys) * (len(ys) / len(y))  # * 1.0 in one process: exact
        (loss * ctx.world).backward()
        optimizer.step()
        model.zero_grad(set_to_none=True)  # optim.SGD has cleared them already
        return loss.detach()

    return autograd_step


def make_epoch(
    params: TrainParams, model: nn.Module, optimizer: Optimizer, ctx: distributed.Context, n: int
) -> Callable[[Tensor, Tensor, Tensor], Tensor]:
    """One epoch on ``x``, ``y`` in ``order``, returning the per-step losses ``[S]``: the
    notebook's own setup as ``NotebookEpoch``, else ``make_step`` on each minibatch, gathered
    one at a time (memory stays the data once)."""
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
    checkpoint: Checkpoint | None = None,
) -> TrainResult:
    """Train a fresh model from ``params``, or resume ``checkpoint``'s run (saved after every
    epoch) with the same bytes; score the test split, or a held-out val slice."""
    configure_torch(params.threads, params.kernels)
    device = resolve_device(params.device)
    validating = params.val_fraction > 0
    if validating:
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
    schedule, selection = Schedule(params, optimizer), Selection(params)
    parts = {"model": model, "optimizer": optimizer, "schedule": schedule, "selection": selection}
    shuffle = torch.Generator().manual_seed(params.seed)
    history: list[EpochRecord] = []
    if checkpoint is not None:
        history = checkpoint.restore(parts, shuffle, params.epochs, EpochRecord)
        if history:
            where = (len(history) + 1, params.epochs, checkpoint.path)
            log.info("resuming at epoch %d of %d from checkpoint %s", *where)
    first_epoch = len(history) + 1
    run_epoch = make_epoch(params, model, optimizer, ctx, n)  # after the weights are final
    x, y = (torch.from_numpy(a).to(device) for a in (train_split.images, train_split.labels))
    train_labels = y
    if params.gradients == "manual":  # the engine takes one-hot rows, gathered with x
        y = one_hot(y, train_split.num_classes, x.dtype)
    score_x, score_y = (
        torch.from_numpy(a).to(device) for a in (test_split.images, test_split.labels)
    )
    loss_fn = LOSSES[params.output][params.loss]
    engines = [t for t in (optimizer, run_epoch) if isinstance(t, SGD | NotebookEpoch)]
    seconds: list[float] = []
    for epoch in range(first_epoch, params.epochs + 1):
        if selection.stop_reason:
            break
        start = time.perf_counter()
        if schedule.scheduled:
            schedule.apply(*engines)
        # Per-step losses stay device tensors: no host sync inside the loop.
        losses = distributed.sum_(run_epoch(x, y, epoch_order(n, shuffle, device)), ctx)
        finite = torch.isfinite(losses)
        if not bool(finite.all()):
            bad = int((~finite).nonzero()[0])
            raise PipelineError(
                f"train loss became {losses[bad].item()} at epoch {epoch}, step {bad + 1}: "
                f"training diverged; lower train.lr (now {params.lr})"
            )
        score_logits = predict_logits(model, score_x)
        extra: dict[str, float] = {}
        if validating:
            with torch.no_grad():
                extra["val_loss"] = float(loss_fn(score_logits, score_y))
            extra["train_accuracy"] = accuracy(predict_logits(model, x), train_labels)
        mean_loss, score = float(losses.double().mean()), accuracy(score_logits, score_y)
        record = EpochRecord(epoch, mean_loss, score, schedule.lr, **extra)
        history.append(record)
        selection.update(record, model)
        schedule.step()
        if checkpoint is not None:
            checkpoint.save(parts, shuffle, [dataclasses.asdict(r) for r in history])
        seconds.append(time.perf_counter() - start)
        if ctx.rank > 0:  # rank 0 alone logs and writes
            continue
        val = f", val loss {record.val_loss:.4f}" if validating else ""
        shown = (epoch, params.epochs, record.train_loss, scored_on(params), record.accuracy, val)
        log.info("epoch %d/%d: train loss %.4f, %s accuracy %.4f%s (%.2f s)", *shown, seconds[-1])
        if on_epoch is not None:
            on_epoch(record)
    distributed.finish(ctx)
    shipped = selection.best_epoch if params.keep == "best" else history[-1].epoch
    if selection.best_weights is not None:
        model.load_state_dict(selection.best_weights)
    reason = selection.stop_reason or f"completed all {params.epochs} epochs"
    return TrainResult(
        model.cpu(), spec, history, scored_on(params), seconds, shipped, reason, first_epoch
    )


def history_frame(
    history: Sequence[EpochRecord], scored_on: str, scheduled: bool = False, shipped: int = 0
) -> pd.DataFrame:
    """The per-epoch log: ``epoch, train_loss, test_accuracy`` for the notebook's run; with a
    val slice ``train_accuracy, val_loss, val_accuracy`` and ``shipped`` (1 on the shipped
    epoch); with a schedule, ``lr`` after the scores."""
    columns: dict[str, list[object]] = {
        "epoch": [r.epoch for r in history],
        "train_loss": [round(r.train_loss, 6) for r in history],
    }
    if scored_on == "val":
        columns["train_accuracy"] = [round(r.train_accuracy or 0.0, 6) for r in history]
        columns["val_loss"] = [round(r.val_loss or 0.0, 6) for r in history]
    columns[f"{scored_on}_accuracy"] = [round(r.accuracy, 6) for r in history]
    if scheduled:
        columns["lr"] = [float(f"{r.lr:.6g}") for r in history]
    if scored_on == "val":
        columns["shipped"] = [int(r.epoch == shipped) for r in history]
    return pd.DataFrame(columns)


@contextmanager
def epoch_tracker(epochs: int) -> Iterator[Callable[[EpochRecord], None]]:
    """``with epoch_tracker(epochs) as track: train(..., on_epoch=track)``: a tqdm bar over
    the epochs when stderr is a terminal (else the log lines); it writes no file."""
    if not sys.stderr.isatty():
        yield lambda record: None
        return
    from tqdm import tqdm

    with tqdm(total=epochs, unit="epoch", desc="train", file=sys.stderr) as bar:

        def track(record: EpochRecord) -> None:
            bar.n = record.epoch - 1  # a resumed run starts part-way
            bar.set_postfix(loss=f"{record.train_loss:.4f}", acc=f"{record.accuracy:.4f}")
            bar.update(1)

        yield track
