"""The notebook's training loop, made fast and repeatable: seeded epoch orders, minibatches
gathered from one in-memory tensor, autograd or hand-derived gradients (``backprop``), and
per epoch the mean loss and the test (or held-out val) accuracy. Same params -> same weights,
bit for bit, on the same CPU kind."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from mnist_pipeline.core.errors import PipelineError
from mnist_pipeline.core.runtime import configure_torch, resolve_device
from mnist_pipeline.data.geometry import perturb
from mnist_pipeline.data.splits import Split
from mnist_pipeline.learning import distributed
from mnist_pipeline.learning.backprop import ManualBackprop
from mnist_pipeline.learning.calibration import fit_temperature
from mnist_pipeline.learning.checkpoints import Checkpoint
from mnist_pipeline.learning.history import EpochRecord
from mnist_pipeline.learning.losses import LOSSES, one_hot
from mnist_pipeline.learning.models import MODELS, ModelSpec, build_model, predict_logits
from mnist_pipeline.learning.optim import OPTIMIZERS
from mnist_pipeline.learning.params import TrainParams
from mnist_pipeline.learning.progress import Progress
from mnist_pipeline.learning.schedules import HasLr, Schedule

log = logging.getLogger(__name__)
Optimizer = torch.optim.Optimizer
Tick = Callable[[], None]  # called after every minibatch (progress)


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
    temperature: float = 1.0  # fitted on the val slice (learning.calibration); 1.0 without


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


def augmenter(params: TrainParams, epoch: int) -> Callable[[Tensor], Tensor]:
    """``epoch``'s minibatch transform: ``train.augment``'s random geometry drawn from a
    generator seeded by (``train.seed``, ``epoch``), so a resumed run draws what an
    uninterrupted one does; the identity when every setting is 0."""
    settings = params.augment.model_dump()
    if not any(settings.values()):
        return lambda x: x
    rng = np.random.default_rng([params.seed, epoch])
    return lambda x: torch.from_numpy(perturb(x.cpu().numpy(), rng, **settings)).to(x.device)


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
) -> tuple[Callable[[Tensor, Tensor], Tensor], Callable[[], None], list[HasLr]]:
    """One step on a global minibatch (labels ``[B]`` for autograd, one-hot ``[B, C]`` for the
    hand-derived engine) returning this rank's share of its loss (shares sum over ranks); what
    to run after each epoch; and what holds a learning rate the schedule sets."""
    group = optimizer.param_groups[0]
    plain = isinstance(optimizer, torch.optim.SGD) and not (
        group["momentum"] or group["weight_decay"]
    )
    if params.gradients == "manual":
        engine = ManualBackprop(model, params.output, params.loss, params.lr)
        if plain and not ctx.active:  # the notebook's SGD, in place on [b W]
            return engine.sgd_step, engine.push, [engine]
        parameters = list(model.parameters())

        @torch.no_grad()
        def manual_step(x: Tensor, target: Tensor) -> Tensor:
            xs, ts = distributed.shard(x, ctx), distributed.shard(target, ctx)
            loss, grads = engine.gradients(xs, ts, len(x))
            for p, grad in zip(parameters, grads, strict=True):
                p.grad = distributed.sum_(grad, ctx)
            optimizer.step()
            model.zero_grad(set_to_none=True)
            engine.pull()
            return loss

        return manual_step, lambda: None, []
    # DDP averages gradients over ranks; scaling each rank's loss by world * n_r / B turns
    # that average into the exact global-batch gradient even for a short last batch.
    forward = nn.parallel.DistributedDataParallel(model) if ctx.active else model
    loss_fn = LOSSES[params.output][params.loss]

    def autograd_step(x: Tensor, y: Tensor) -> Tensor:
        xs, ys = distributed.shard(x, ctx), distributed.shard(y, ctx)
        loss = loss_fn(forward(xs), ys) * (len(ys) / len(y))  # * 1.0 in one process: exact
        (loss * ctx.world).backward()
        optimizer.step()
        model.zero_grad(set_to_none=True)
        return loss.detach()

    return autograd_step, lambda: None, []


@dataclass
class Run:
    """What one training run works on, built once from the params and the splits."""

    params: TrainParams
    model: nn.Module
    spec: ModelSpec
    x: Tensor  # [N, 784] training images on the device
    y: Tensor  # labels [N], or one-hot [N, C] for the hand-derived engine
    labels: Tensor  # [N]
    score_x: Tensor  # the scoring split: test set, or the held-out val slice
    score_y: Tensor
    ctx: distributed.Context

    def score(self, epoch: int, losses: Tensor, lr: float) -> EpochRecord:
        """The epoch's record: mean step loss, the scoring split's accuracy (and with a val
        slice its loss and the training part's accuracy); a non-finite loss stops the run."""
        finite = torch.isfinite(losses)
        if not bool(finite.all()):
            bad = int((~finite).nonzero()[0])
            raise PipelineError(
                f"train loss became {losses[bad].item()} at epoch {epoch}, step {bad + 1}: "
                f"training diverged; lower train.lr (now {self.params.lr})"
            )
        logits = predict_logits(self.model, self.score_x)
        extra: dict[str, float] = {}
        if self.params.val_fraction > 0:
            with torch.no_grad():
                loss_fn = LOSSES[self.params.output][self.params.loss]
                extra["val_loss"] = float(loss_fn(logits, self.score_y))
            extra["train_accuracy"] = accuracy(predict_logits(self.model, self.x), self.labels)
        mean = float(losses.double().mean())
        return EpochRecord(epoch, mean, accuracy(logits, self.score_y), lr, **extra)

    def temperature(self) -> float:
        """The temperature that calibrates the model on the val slice; 1.0 without one."""
        if self.params.val_fraction == 0:
            return 1.0
        logits = predict_logits(self.model, self.score_x).cpu().numpy()
        return fit_temperature(logits, self.score_y.cpu().numpy(), self.params.output)


def prepare(params: TrainParams, train_split: Split, test_split: Split) -> Run:
    """The device, the process group, the seeded fresh model and the tensors to train on."""
    configure_torch(params.threads, params.kernels)
    device = resolve_device(params.device)
    if params.val_fraction > 0:
        train_split, test_split = holdout(train_split, params.val_fraction, params.seed)
    if params.batch_size > len(train_split):
        raise PipelineError(
            f"train.batch_size={params.batch_size} is larger than the training set "
            f"({len(train_split)} images); lower train.batch_size"
        )
    ctx = distributed.init(device)
    torch.manual_seed(params.seed)  # same seed on every rank: same init, same order
    settings = {key: getattr(params, key) for key in MODELS[params.model].settings}
    spec = ModelSpec(params.model, train_split.images.shape[1], train_split.num_classes, **settings)
    x, labels, score_x, score_y = (
        torch.from_numpy(a).to(device)
        for a in (train_split.images, train_split.labels, test_split.images, test_split.labels)
    )
    manual = params.gradients == "manual"  # the engine takes one-hot rows, gathered with x
    y = one_hot(labels, train_split.num_classes, x.dtype) if manual else labels
    model = build_model(spec).to(device)
    return Run(params, model, spec, x, y, labels, score_x, score_y, ctx)


def train(
    params: TrainParams,
    train_split: Split,
    test_split: Split,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    checkpoint: Checkpoint | None = None,
    progress: Progress | None = None,
) -> TrainResult:
    """Train a fresh model from ``params``, or resume ``checkpoint``'s run (saved after every
    epoch) with the same bytes; score the test split, or a held-out val slice."""
    run = prepare(params, train_split, test_split)
    optimizer = make_optimizer(params, run.model)
    schedule, selection = Schedule(params, optimizer), Selection(params)
    parts = {
        "model": run.model,
        "optimizer": optimizer,
        "schedule": schedule,
        "selection": selection,
    }
    shuffle = torch.Generator().manual_seed(params.seed)
    scored_on = "val" if params.val_fraction > 0 else "test"
    history: list[EpochRecord] = []
    if checkpoint is not None:
        history = checkpoint.restore(parts, shuffle, params.epochs, EpochRecord)
        if history:
            where = (len(history) + 1, params.epochs, checkpoint.path)
            log.info("resuming at epoch %d of %d from checkpoint %s", *where)
    first_epoch = len(history) + 1
    step, end_epoch, rated = make_step(params, run.model, optimizer, run.ctx)  # weights final
    progress = progress or Progress(params.epochs)
    seconds: list[float] = []
    for epoch in range(first_epoch, params.epochs + 1):
        if selection.stop_reason:
            break
        start = time.perf_counter()
        schedule.apply(*rated)
        order = epoch_order(len(run.x), shuffle, run.x.device).split(params.batch_size)
        progress.start(epoch, len(order))
        augment = augmenter(params, epoch)
        # Per-step losses stay device tensors: no host sync inside the loop.
        batches = ((augment(run.x.index_select(0, i)), run.y.index_select(0, i)) for i in order)
        losses = [progress.tick(step(x, y)) for x, y in batches]
        end_epoch()
        record = run.score(epoch, distributed.sum_(torch.stack(losses), run.ctx), schedule.lr)
        history.append(record)
        selection.update(record, run.model)
        schedule.step()
        if checkpoint is not None:
            checkpoint.save(parts, shuffle, [dataclasses.asdict(r) for r in history])
        seconds.append(time.perf_counter() - start)
        if run.ctx.rank == 0:  # rank 0 alone logs and writes
            progress.done(record, scored_on, seconds[-1])
            if on_epoch is not None:
                on_epoch(record)
    progress.close()
    distributed.finish(run.ctx)
    shipped = selection.best_epoch if params.keep == "best" else history[-1].epoch
    if selection.best_weights is not None:
        run.model.load_state_dict(selection.best_weights)
    reason = selection.stop_reason or f"completed all {params.epochs} epochs"
    temperature = run.temperature()  # on the device, where the scoring split is
    model = run.model.cpu()
    return TrainResult(
        model, run.spec, history, scored_on, seconds, shipped, reason, first_epoch, temperature
    )
