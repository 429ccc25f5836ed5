"""The learning rate per epoch: constant (the notebook), step or cosine, after an optional
linear warm-up. One implementation, ``torch.optim.lr_scheduler``, for every engine.

A torch optimizer (Adam) is scheduled directly. The project's own SGD step
(``optim.SGD``) and the notebook's fused epoch (``backprop.NotebookEpoch``) are no torch
optimizers, so ``Schedule`` runs the same scheduler on a stand-in optimizer that holds no
parameters and hands its rate to them before every epoch: both engines see the same rate,
epoch by epoch (tests/test_schedules.py holds them together).

With ``warmup: w`` the rate climbs linearly over epochs ``1..w`` (``lr · e / (w + 1)``);
the schedule then runs over the remaining ``epochs - w`` epochs:

- ``constant``: ``lr``;
- ``step``: ``lr · gamma ** ((e - w - 1) // step_size)``;
- ``cosine``: ``lr · (1 + cos(π (e - w - 1) / (epochs - w))) / 2``, from ``lr`` towards 0.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
from torch.optim import lr_scheduler

from mnist_pipeline.learning.config import TrainParams


class HasLr(Protocol):
    lr: float


def is_scheduled(params: TrainParams) -> bool:
    """``False`` for the notebook's constant rate: nothing changes it, the log has no lr."""
    return params.schedule != "constant" or params.warmup > 0


def make_scheduler(params: TrainParams, optimizer: torch.optim.Optimizer) -> Any:
    """The ``torch.optim.lr_scheduler`` for ``params``, stepped once per epoch."""
    main_epochs = params.epochs - params.warmup
    if params.schedule == "step":
        main: Any = lr_scheduler.StepLR(optimizer, params.step_size, params.gamma)
    elif params.schedule == "cosine":
        main = lr_scheduler.CosineAnnealingLR(optimizer, T_max=main_epochs)
    else:
        main = lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
    if params.warmup == 0:
        return main
    start = 1.0 / (params.warmup + 1)
    warm = lr_scheduler.LinearLR(optimizer, start, 1.0, total_iters=params.warmup)
    return lr_scheduler.SequentialLR(optimizer, [warm, main], milestones=[params.warmup])


class Schedule:
    """The rate of the coming epoch (``lr``); ``step()`` after every epoch.

    ``target`` is the optimizer the rate applies to: a torch optimizer is scheduled in
    place; anything with an ``lr`` attribute (``optim.SGD``, ``NotebookEpoch``) gets the
    rate of a stand-in optimizer through ``apply``.
    """

    def __init__(self, params: TrainParams, target: object) -> None:
        self.scheduled = is_scheduled(params)
        self.stand_in = not isinstance(target, torch.optim.Optimizer)
        if isinstance(target, torch.optim.Optimizer):
            self.optimizer = target
        else:
            self.optimizer = torch.optim.SGD([torch.zeros(0, requires_grad=True)], lr=params.lr)
        self.scheduler = make_scheduler(params, self.optimizer) if self.scheduled else None

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def apply(self, *targets: HasLr) -> None:
        """Hand the coming epoch's rate to engines that are no torch optimizers."""
        for target in targets:
            target.lr = self.lr

    def step(self) -> None:
        if self.scheduler is not None:
            if self.stand_in:  # a no-op (no gradients) that tells torch the epoch has run
                self.optimizer.step()
            self.scheduler.step()

    def state_dict(self) -> dict[str, Any]:
        if self.scheduler is None:
            return {}
        return {"scheduler": self.scheduler.state_dict(), "lr": self.lr}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])
            for group in self.optimizer.param_groups:
                group["lr"] = state["lr"]
