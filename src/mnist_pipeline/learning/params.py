"""``params.yaml``'s ``train`` section: each list of choices is a registry's keys, and
combinations that cannot run are refused before the stage starts."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from mnist_pipeline.core.errors import PipelineError
from mnist_pipeline.core.params import Count, Epochs, Int, Number, Section, Seed
from mnist_pipeline.core.runtime import DEVICES, KERNELS
from mnist_pipeline.data.splits import IMAGE_SIDE
from mnist_pipeline.learning.losses import LOSSES, UNSURE_BELOW
from mnist_pipeline.learning.models import ACTIVATIONS, MODELS

# lr and weight decay scale float32 gradients: a larger factor overflows float32 (3.4e38).
Factor = Annotated[Number, Field(le=1e38)]
Sizes = Annotated[tuple[Count, ...], Field(min_length=1)]
Loss = Literal[tuple(dict.fromkeys(loss for losses in LOSSES.values() for loss in losses))]
MAX_WEIGHTS = 25_000_000  # ~100 MB of float32; training holds ~4 copies (grads, Adam)
Degrees = Annotated[Number, Field(ge=0.0, le=45.0)]


class Augment(Section):
    """Random geometry for every training minibatch (``data.geometry.perturb``); all 0: none."""

    rotate: Degrees = 0.0  # either way
    shift: Annotated[Number, Field(ge=0.0, le=6.0)] = 0.0  # pixels, along each axis
    scale: Annotated[Number, Field(ge=0.0, le=0.5)] = 0.0  # size in 1 ± scale
    shear: Degrees = 0.0
    stroke: Annotated[Number, Field(ge=0.0, le=2.0)] = 0.0  # pixels thicker or thinner


Share = Annotated[Number, Field(ge=0.0, le=4.0)]


class Characters(Section):
    """``data/characters.npz`` images added to every minibatch, per image of it (0.5: a batch
    of 128 gains 64); all 0: none. For the digit datasets."""

    none: Share = 0.0  # letters and symbols, trained as no digit
    digits: Share = 0.0  # digits in handwriting fonts and typefaces

    @property
    def used(self) -> bool:
        return self.none > 0 or self.digits > 0


class TrainParams(Section):
    model: Literal[tuple(MODELS)] = "linear"
    hidden: Sizes = (128,)  # mlp layers, and the cnn's head
    channels: Sizes = (6, 16)  # one conv + 2×2 max-pool block per entry (cnn, cnn_bn)
    activation: Literal[tuple(ACTIVATIONS)] = "sigmoid"
    output: Literal[tuple(LOSSES)] = "softmax"
    loss: Loss = "mse"
    gradients: Literal["manual", "autograd"] = "manual"  # manual: backprop.ManualBackprop
    optimizer: Literal["sgd", "adam"] = "sgd"  # optim.make_optimizer
    lr: Annotated[Factor, Field(gt=0.0)] = 0.01
    momentum: Annotated[Number, Field(ge=0.0, le=0.999)] = 0.0
    weight_decay: Annotated[Factor, Field(ge=0.0)] = 0.0
    batch_size: Count = 16
    epochs: Count = 10
    seed: Seed = 0
    augment: Augment = Augment()
    characters: Characters = Characters()
    val_fraction: Annotated[Number, Field(ge=0.0, le=0.5)] = 0.0
    keep: Literal["last", "best"] = "last"  # which epoch's weights ship
    monitor: Literal["val_loss", "val_accuracy"] = "val_loss"  # what best and patience follow
    patience: Epochs = 0  # 0: never stop early
    schedule: Literal["constant", "step", "cosine"] = "constant"  # learning rate per epoch
    step_size: Count = 10  # step: epochs per decay
    gamma: Annotated[Number, Field(gt=0.0, le=1.0)] = 0.1  # step: lr factor per decay
    warmup: Epochs = 0  # epochs of linear warm-up
    device: Literal[tuple(DEVICES)] = "auto"
    threads: Annotated[Int, Field(ge=1, le=256)] = 1
    kernels: Literal[tuple(KERNELS)] = "portable"  # see core/runtime.py
    processes: Annotated[Int, Field(ge=1, le=64)] = 1
    rank_timeout: Annotated[Number, Field(ge=5, le=86_400)] = 120  # s without a reply: stalled
    unsure_below: Annotated[Number, Field(ge=0.0, lt=1.0)] = UNSURE_BELOW  # 0: always answer

    @model_validator(mode="after")
    def _runnable(self) -> TrainParams:
        """Refuse combinations of valid keys that cannot run, before any stage starts."""
        entry = MODELS[self.model]
        if self.gradients == "manual" and not entry.manual:
            manual = ", ".join(name for name, model in MODELS.items() if model.manual)
            raise PipelineError(
                f"train.gradients: manual: model {self.model!r} is autograd only: the manual "
                f"backprop engine trains models {manual}; set train.gradients=autograd"
            )
        if self.characters.used and self.gradients == "manual":
            raise PipelineError(
                "train.characters: trains through autograd only; set train.gradients=autograd "
                "or every train.characters share to 0"
            )
        if self.processes > self.batch_size:
            raise PipelineError(
                f"train.processes: {self.processes} is more than train.batch_size="
                f"{self.batch_size}; every process needs a share of each minibatch"
            )
        if self.optimizer != "sgd" and self.momentum > 0:
            raise PipelineError(
                f"train.momentum: {self.momentum} applies to optimizer sgd only, not "
                f"{self.optimizer!r}; set it to 0 or use train.optimizer=sgd"
            )
        chooser = "train.keep: best" if self.keep == "best" else f"train.patience: {self.patience}"
        if self.val_fraction == 0 and (self.keep == "best" or self.patience > 0):
            raise PipelineError(
                f"{chooser} needs a validation slice to choose by (the test set never chooses); "
                "set train.val_fraction > 0, e.g. 0.1"
            )
        if self.warmup >= self.epochs:
            raise PipelineError(
                f"train.warmup: {self.warmup} epochs leaves none of train.epochs="
                f"{self.epochs} after the warm-up; use fewer warm-up epochs"
            )
        settings = {key: getattr(self, key) for key in entry.settings}
        try:
            weights = entry.weights(IMAGE_SIDE, settings)
        except ValueError as err:  # the settings cannot be built
            raise PipelineError(f"train.{err}") from err
        if weights > MAX_WEIGHTS:
            sized = [f"{k} {list(v)}" for k, v in settings.items() if isinstance(v, tuple)]
            raise PipelineError(
                f"train.{' with '.join(sized).replace(' ', ': ', 1)} makes a {self.model} of "
                f"{weights:,} weights, over the {MAX_WEIGHTS:,} that train in the 1.5 GB "
                "memory budget; use smaller layers"
            )
        return self
