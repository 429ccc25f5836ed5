"""Output functions, losses and accuracy, with the notebook's definitions.

``mse`` is exactly the notebook's: squared error of the probabilities against one-hot
labels, summed over classes, averaged over the batch. ``LOSSES[output][loss]`` is a
function of *logits* for a ``train.output`` / ``train.loss`` pair, so models stay
output-agnostic: softmax or sigmoid outputs, mse or cross-entropy (categorical for
softmax, per-class binary for sigmoid).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor


@functools.lru_cache(maxsize=16)
def _identity(num_classes: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    return torch.eye(num_classes, dtype=dtype, device=device)


def one_hot(labels: Tensor, num_classes: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """``[B]`` int64 -> ``[B, num_classes]``: the notebook's ``torch.eye(10)[y]``.

    The identity matrix is cached: this runs once per training step, and ``F.one_hot``
    costs an extra max/min check per call.
    """
    return _identity(num_classes, dtype, labels.device)[labels]


def mse(probs: Tensor, labels: Tensor) -> Tensor:
    """The notebook's loss: ``((onehot(y) - p)^2).sum(1).mean()``; probs ``[B, C]``."""
    target = one_hot(labels, probs.shape[1], probs.dtype)
    return (target - probs).pow(2).sum(1).mean()


def _sigmoid_cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """Binary cross-entropy per class, summed over classes, mean over the batch."""
    target = one_hot(labels, logits.shape[1], logits.dtype)
    per_class = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return per_class.sum(1).mean()


LossFn = Callable[[Tensor, Tensor], Tensor]

# output -> loss -> the loss of logits [B, C] and labels [B]
LOSSES: dict[str, dict[str, LossFn]] = {
    "softmax": {
        "mse": lambda logits, labels: mse(torch.softmax(logits, dim=1), labels),
        "cross_entropy": F.cross_entropy,
    },
    "sigmoid": {
        "mse": lambda logits, labels: mse(torch.sigmoid(logits), labels),
        "cross_entropy": _sigmoid_cross_entropy,
    },
}


def accuracy(scores: Tensor, labels: Tensor) -> float:
    """Share of rows whose highest score is the label (scores may be logits or probs)."""
    return float((scores.argmax(dim=1) == labels).float().mean())
