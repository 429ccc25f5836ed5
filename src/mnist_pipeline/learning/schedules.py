"""The learning rate per epoch by ``torch.optim.lr_scheduler``: constant (the notebook), step
or cosine, after an optional linear warm-up (``lr · e / (warmup + 1)`` in epochs 1..warmup)."""

from __future__ import annotations

import warnings
from typing import Any, Protocol

import torch
from torch.optim import lr_scheduler

from mnist_pipeline.learning.params import TrainParams


class HasLr(Protocol):
    lr: float


def is_scheduled(params: TrainParams) -> bool:
    """``False`` for the notebook's constant rate: nothing changes it, the log has no lr."""
    return params.schedule != "constant" or params.warmup > 0


class Schedule:
    """The rate of the coming epoch (``lr``); ``step()`` after every epoch."""

    def __init__(self, params: TrainParams, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer, warmup = optimizer, params.warmup
        if params.schedule == "step":
            main: Any = lr_scheduler.StepLR(optimizer, params.step_size, params.gamma)
        elif params.schedule == "cosine":
            main = lr_scheduler.CosineAnnealingLR(optimizer, params.epochs - warmup)
        else:
            main = lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
        self.scheduler = main
        if warmup > 0:
            warm = lr_scheduler.LinearLR(optimizer, 1.0 / (warmup + 1), 1.0, total_iters=warmup)
            self.scheduler = lr_scheduler.SequentialLR(optimizer, [warm, main], milestones=[warmup])

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def apply(self, *targets: HasLr) -> None:
        """Hand the rate to what steps its own weights (the hand-derived engine)."""
        for target in targets:
            target.lr = self.lr

    def step(self) -> None:
        with warnings.catch_warnings():  # the notebook's engine never steps the optimizer
            warnings.filterwarnings("ignore", "Detected call of `lr_scheduler.step", UserWarning)
            self.scheduler.step()

    def state_dict(self) -> dict[str, Any]:
        return self.scheduler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scheduler.load_state_dict(state)
