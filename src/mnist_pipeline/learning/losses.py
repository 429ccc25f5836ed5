"""Output functions and losses, with the notebook's definitions: the loss registry.

``LOSSES[output][loss]`` is a function of *logits* ``[B, C]`` and labels ``[B]`` for a
``train.output`` / ``train.loss`` pair, so models stay output-agnostic: softmax or sigmoid
outputs, mse or cross-entropy (categorical for softmax, per-class binary for sigmoid).
``learning.config`` takes both settings' choices from it. ``mse`` is exactly the
notebook's: squared error of the probabilities against one-hot labels, summed over
classes, averaged over the batch. torch is imported when a loss is computed, so the
params check that reads this registry needs none.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from torch import Tensor


@functools.lru_cache(maxsize=16)
def _identity(num_classes: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    import torch

    return torch.eye(num_classes, dtype=dtype, device=device)


def one_hot(labels: Tensor, num_classes: int, dtype: torch.dtype | None = None) -> Tensor:
    """``[B]`` int64 -> ``[B, num_classes]`` (float32 unless ``dtype``): the notebook's
    ``torch.eye(10)[y]``.

    The identity matrix is cached: this runs once per training step, and ``F.one_hot``
    costs an extra max/min check per call.
    """
    import torch

    return _identity(num_classes, dtype or torch.float32, labels.device)[labels]


def mse(probs: Tensor, labels: Tensor) -> Tensor:
    """The notebook's loss: ``((onehot(y) - p)^2).sum(1).mean()``; probs ``[B, C]``."""
    target = one_hot(labels, probs.shape[1], probs.dtype)
    return (target - probs).pow(2).sum(1).mean()


def _softmax_mse(logits: Tensor, labels: Tensor) -> Tensor:
    return mse(logits.softmax(dim=1), labels)


def _sigmoid_mse(logits: Tensor, labels: Tensor) -> Tensor:
    return mse(logits.sigmoid(), labels)


def _softmax_cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    import torch.nn.functional as F

    return F.cross_entropy(logits, labels)


def _sigmoid_cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """Binary cross-entropy per class, summed over classes, mean over the batch."""
    import torch.nn.functional as F

    target = one_hot(labels, logits.shape[1], logits.dtype)
    per_class = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return per_class.sum(1).mean()


LossFn = Callable[["Tensor", "Tensor"], "Tensor"]

# output -> loss -> the loss of logits [B, C] and labels [B]
LOSSES: dict[str, dict[str, LossFn]] = {
    "softmax": {"mse": _softmax_mse, "cross_entropy": _softmax_cross_entropy},
    "sigmoid": {"mse": _sigmoid_mse, "cross_entropy": _sigmoid_cross_entropy},
}
