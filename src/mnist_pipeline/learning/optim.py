"""How the weights move: the optimizer, the learning rate of each epoch, the step on one global
minibatch (in one process or sharded over torchrun's ranks)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.optim import lr_scheduler

from mnist_pipeline.learning import distributed
from mnist_pipeline.learning.backprop import ManualBackprop
from mnist_pipeline.learning.losses import LOSSES
from mnist_pipeline.learning.params import TrainParams

Step = Callable[[Tensor, Tensor], Tensor]


def is_scheduled(params: TrainParams) -> bool:
    """``False`` for the notebook's constant rate: nothing changes it, the log has no lr."""
    return params.schedule != "constant" or params.warmup > 0


def rates(params: TrainParams) -> list[float]:
    """Each epoch's learning rate: ``torch.optim.lr_scheduler``'s schedule after an optional
    linear warm-up, stepped on a stand-in optimizer."""
    if not is_scheduled(params):
        return [params.lr] * params.epochs
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=params.lr)
    if params.schedule == "step":
        main: lr_scheduler.LRScheduler = lr_scheduler.StepLR(
            optimizer, params.step_size, params.gamma
        )
    elif params.schedule == "cosine":
        main = lr_scheduler.CosineAnnealingLR(optimizer, params.epochs - params.warmup)
    else:
        main = lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
    scheduler = main
    if params.warmup > 0:
        start = 1.0 / (params.warmup + 1)
        warm = lr_scheduler.LinearLR(optimizer, start, 1.0, total_iters=params.warmup)
        scheduler = lr_scheduler.SequentialLR(optimizer, [warm, main], [params.warmup])
    found = []
    for _ in range(params.epochs):
        found.append(float(optimizer.param_groups[0]["lr"]))
        optimizer.step()
        scheduler.step()
    return found


def needs_optimizer(params: TrainParams, world: int) -> bool:
    """``False`` for the notebook's plain SGD in one process: the hand-derived engine steps it."""
    plain = params.optimizer == "sgd" and not (params.momentum or params.weight_decay)
    return not (params.gradients == "manual" and plain and world == 1)


def make_optimizer(params: TrainParams, model: nn.Module) -> torch.optim.Optimizer:
    parameters = list(model.parameters())
    if params.optimizer == "adam":
        # fused: one ATen kernel under the pinned capability. The default per-tensor step takes
        # torch.sqrt, which runs MKL's vector math (VML), unpinned by MKL_CBWR: on an AMD CPU
        # its kernel starts from rsqrtps, whose bits differ between Intel and AMD CPUs.
        return torch.optim.Adam(parameters, params.lr, weight_decay=params.weight_decay, fused=True)
    return torch.optim.SGD(
        parameters, params.lr, momentum=params.momentum, weight_decay=params.weight_decay
    )


def make_step(
    params: TrainParams,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
    ctx: distributed.Context,
) -> tuple[Step, Callable[[float], None], Callable[[], None]]:
    """The step on a global minibatch (returning this rank's share of its loss), what sets the
    epoch's learning rate, and what runs after each epoch."""
    if optimizer is None:  # the notebook's SGD, in place on [b W]
        engine = ManualBackprop(model, params.output, params.loss, params.lr)
        return engine.sgd_step, lambda lr: setattr(engine, "lr", lr), engine.push

    def set_lr(lr: float) -> None:
        optimizer.param_groups[0]["lr"] = lr

    if params.gradients == "manual":
        engine = ManualBackprop(model, params.output, params.loss)
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

        return manual_step, set_lr, lambda: None
    # DDP averages gradients over ranks; scaling each rank's loss by world * n_r / B turns
    # that average into the exact global-batch gradient even for a short last batch.
    forward = nn.parallel.DistributedDataParallel(model) if ctx.world > 1 else model
    loss_fn = LOSSES[params.output][params.loss]

    def autograd_step(x: Tensor, y: Tensor) -> Tensor:
        xs, ys = distributed.shard(x, ctx), distributed.shard(y, ctx)
        loss = loss_fn(forward(xs), ys) * (len(ys) / len(y))  # * 1.0 in one process: exact
        (loss * ctx.world).backward()
        optimizer.step()
        model.zero_grad(set_to_none=True)
        return loss.detach()

    return autograd_step, set_lr, lambda: None
