"""The optimizer registry: ``train.optimizer`` -> a ``torch.optim`` optimizer, built from
``(parameters, lr, momentum, weight_decay)``. torch is imported on use: the params check
imports this registry without it. The notebook's own step (plain SGD) runs in place inside
the hand-derived engine (``backprop.ManualBackprop.sgd_step``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import Tensor


def _sgd(parameters: Sequence[Tensor], lr: float, momentum: float, weight_decay: float) -> Any:
    import torch

    return torch.optim.SGD(parameters, lr=lr, momentum=momentum, weight_decay=weight_decay)


def _adam(parameters: Sequence[Tensor], lr: float, momentum: float, weight_decay: float) -> Any:
    import torch

    # fused: one ATen kernel under the pinned capability. The default per-tensor step takes
    # torch.sqrt, which runs MKL's vector math (VML), unpinned by MKL_CBWR: on an AMD CPU
    # its kernel starts from rsqrtps, whose bits differ between Intel and AMD CPUs.
    return torch.optim.Adam(parameters, lr=lr, weight_decay=weight_decay, fused=True)


OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {"sgd": _sgd, "adam": _adam}
