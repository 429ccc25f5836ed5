"""The notebook's training loop, seeded: same params -> same weights, bit for bit, on the same
CPU kind."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from mnist_pipeline.core.errors import PipelineError
from mnist_pipeline.core.runtime import configure_torch, resolve_device
from mnist_pipeline.data.characters import DIGITS, load_characters
from mnist_pipeline.data.geometry import perturb
from mnist_pipeline.data.splits import Split
from mnist_pipeline.learning import distributed
from mnist_pipeline.learning.checkpoints import Checkpoint
from mnist_pipeline.learning.history import EpochRecord, Selection, log_epoch
from mnist_pipeline.learning.losses import LOSSES, calibrate, one_hot
from mnist_pipeline.learning.models import MODELS, ModelSpec, build_model, predict_logits
from mnist_pipeline.learning.optim import Step, make_optimizer, make_step, needs_optimizer, rates
from mnist_pipeline.learning.params import TrainParams

log = logging.getLogger(__name__)


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
    temperature: float = 1.0  # fitted on the val slice (losses.calibrate); 1.0 without
    shift: float = 0.0  # likewise, for a sigmoid output

    def summary(self) -> str:
        """The stage's closing line: how the run went and what ships."""
        trained = len(self.seconds_per_epoch)
        fitted = f"; temperature {self.temperature}" if self.temperature != 1.0 else ""
        fitted += f", shift {self.shift}" if self.shift else ""
        return (
            f"train: {self.stop_reason}; trained {trained} epoch(s) from epoch "
            f"{self.first_epoch}; shipped epoch {self.shipped} of {len(self.history)}, "
            f"{self.scored_on} accuracy {self.history[self.shipped - 1].accuracy:.4f}{fitted}"
        )


def accuracy(scores: Tensor, labels: Tensor) -> float:
    """Share of rows whose highest score is the label (scores may be logits or probs)."""
    return float((scores.argmax(dim=1) == labels).float().mean())


def epoch_order(n: int, generator: torch.Generator, device: torch.device | str = "cpu") -> Tensor:
    """One epoch's sample order, drawn on the CPU (the same on every device)."""
    return torch.randperm(n, generator=generator).to(device)


def augmenter(params: TrainParams, epoch: int) -> Callable[[Tensor], Tensor]:
    """``epoch``'s minibatch transform: ``train.augment``'s random geometry seeded by
    (``train.seed``, ``epoch``), so a resumed run draws the same; all 0: the identity."""
    settings = params.augment.model_dump()
    if not any(settings.values()):
        return lambda x: x
    rng = np.random.default_rng([params.seed, epoch])
    return lambda x: torch.from_numpy(perturb(x.cpu().numpy(), rng, **settings)).to(x.device)


def mixer(run: Run, epoch: int) -> Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]:
    """``epoch``'s minibatch with ``train.characters``' shares of no-digit characters and font
    digits appended, drawn by (``train.seed``, ``epoch``); without characters: as it is."""
    if run.characters is None:
        return lambda x, y: (x, y)
    images, labels = run.characters
    shares = run.params.characters
    kinds = ((shares.none, labels < 0), (shares.digits, labels >= 0))
    pools = [(share, torch.nonzero(kind)[:, 0]) for share, kind in kinds if share > 0]
    rng = np.random.default_rng([run.params.seed, epoch, 1])

    def mix(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        drawn = torch.cat(
            [pool[torch.from_numpy(rng.integers(0, len(pool), round(share * len(x))))]
             for share, pool in pools]
        )  # fmt: skip
        return torch.cat([x, images[drawn]]), torch.cat([y, labels[drawn]])

    return mix


def holdout(split: Split, fraction: float, seed: int) -> tuple[Split, Split]:
    """Split off a stratified ``fraction`` of ``split`` as a validation set, fixed by ``seed``."""
    from sklearn.model_selection import train_test_split

    n_val = round(len(split) * fraction)
    try:
        keep, val = train_test_split(
            np.arange(len(split)), test_size=n_val, random_state=seed, stratify=split.labels
        )
    except ValueError as err:  # an empty part, or a class too small to appear in both
        raise PipelineError(
            f"train.val_fraction={fraction}: cannot hold out a stratified slice of "
            f"{n_val} images ({str(err).splitlines()[0]}); choose a larger fraction"
        ) from err
    return split.subset(np.sort(keep)), split.subset(np.sort(val))


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
    characters: tuple[Tensor, Tensor] | None  # train.characters' images and labels

    def score(self, epoch: int, losses: Tensor, lr: float) -> EpochRecord:
        """The epoch's record; a non-finite loss stops the run."""
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

    def calibration(self) -> tuple[float, float]:
        """The temperature and shift that calibrate the model on the val slice; (1, 0) without."""
        if self.params.val_fraction == 0:
            return 1.0, 0.0
        logits = predict_logits(self.model, self.score_x).cpu().numpy()
        return calibrate(logits, self.score_y.cpu().numpy(), self.params.output)


def prepare(
    params: TrainParams, train_split: Split, test_split: Split, characters: Split | None = None
) -> Run:
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
    extra = None
    if params.characters.used:
        if train_split.classes != DIGITS:
            raise PipelineError(
                "train.characters: trains on letters and digits; this dataset's classes are "
                f"{', '.join(train_split.classes)}; set every train.characters share to 0"
            )
        characters = load_characters() if characters is None else characters
        extra = (torch.from_numpy(characters.images), torch.from_numpy(characters.labels))
        extra = tuple(t.to(device) for t in extra)
    return Run(params, model, spec, x, y, labels, score_x, score_y, ctx, extra)


def one_epoch(run: Run, epoch: int, step: Step, shuffle: torch.Generator) -> Tensor:
    """Step every minibatch; the per-step losses, summed over ranks, stay on the device."""
    order = epoch_order(len(run.x), shuffle, run.x.device).split(run.params.batch_size)
    augment, mix = augmenter(run.params, epoch), mixer(run, epoch)
    batches = (mix(run.x.index_select(0, i), run.y.index_select(0, i)) for i in order)
    losses = [step(augment(x), y) for x, y in batches]
    return distributed.sum_(torch.stack(losses), run.ctx)


@contextlib.contextmanager
def memory_is_one_line() -> Iterator[None]:
    """Running out of memory, whichever allocator says so, is one error line."""
    try:
        yield
    except (MemoryError, RuntimeError) as err:  # torch's allocators raise RuntimeError
        if not isinstance(err, MemoryError) and "alloc" not in str(err):
            raise
        reason = (str(err).strip().splitlines() or ["MemoryError"])[0]
        raise PipelineError(
            f"train: out of memory ({reason[:120]}); lower train.batch_size or the model's "
            "size (train.hidden, train.channels), or free memory"
        ) from err


@memory_is_one_line()
def train(
    params: TrainParams,
    train_split: Split,
    test_split: Split,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    checkpoint: Checkpoint | None = None,
    characters: Split | None = None,
) -> TrainResult:
    """Train a fresh model from ``params``, or resume ``checkpoint``'s run with the same bytes;
    ``train.characters`` draws from ``characters`` (default: ``data.characters``' own)."""
    run = prepare(params, train_split, test_split, characters)
    selection, shuffle = Selection(params), torch.Generator().manual_seed(params.seed)
    parts: dict[str, Any] = {"model": run.model, "selection": selection}
    if needs_optimizer(params, run.ctx.world):
        parts["optimizer"] = make_optimizer(params, run.model)
    history: list[EpochRecord] = []
    if checkpoint is not None:
        history = [EpochRecord(**row) for row in checkpoint.restore(parts, shuffle)]
        if history:
            where = (len(history) + 1, params.epochs, checkpoint.path)
            log.info("resuming at epoch %d of %d from checkpoint %s", *where)
    first_epoch, lrs, seconds = len(history) + 1, rates(params), []
    step, set_lr, end_epoch = make_step(params, run.model, parts.get("optimizer"), run.ctx)
    scored_on = "val" if params.val_fraction > 0 else "test"
    for epoch in range(first_epoch, params.epochs + 1):
        if selection.stop_reason:
            break
        start = time.perf_counter()
        set_lr(lrs[epoch - 1])
        losses = one_epoch(run, epoch, step, shuffle)
        end_epoch()
        record = run.score(epoch, losses, lrs[epoch - 1])
        history.append(record)
        selection.update(record, run.model)
        if checkpoint is not None:
            checkpoint.save(parts, shuffle, [dataclasses.asdict(r) for r in history])
        seconds.append(time.perf_counter() - start)
        if run.ctx.rank == 0:  # rank 0 alone logs and writes
            log_epoch(record, params.epochs, scored_on, seconds[-1])
            if on_epoch is not None:
                on_epoch(record)
    distributed.finish(run.ctx)
    shipped = selection.best_epoch if params.keep == "best" else history[-1].epoch
    if selection.best_weights is not None:
        run.model.load_state_dict(selection.best_weights)
    reason = selection.stop_reason or f"completed all {params.epochs} epochs"
    calibration = run.calibration()  # on the device, where the scoring split is
    model = run.model.cpu()
    return TrainResult(
        model, run.spec, history, scored_on, seconds, shipped, reason, first_epoch, *calibration
    )
