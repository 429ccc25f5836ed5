"""Output functions, losses and accuracy, with the notebook's definitions.

``mse`` is exactly the notebook's: squared error of the probabilities against one-hot
labels, summed over classes, averaged over the batch. ``LOSSES`` maps ``train.loss`` to a
function of *logits* (softmax applied inside), so models stay output-agnostic.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor


def one_hot(labels: Tensor, num_classes: int) -> Tensor:
    """``[B]`` int64 -> ``[B, num_classes]`` float32, like the notebook's ``torch.eye(10)[y]``."""
    return F.one_hot(labels, num_classes).to(torch.float32)


def mse(probs: Tensor, labels: Tensor) -> Tensor:
    """The notebook's loss: ``((onehot(y) - p)^2).sum(1).mean()``; probs ``[B, C]``."""
    target = one_hot(labels, probs.shape[1]).to(probs.dtype)
    return (target - probs).pow(2).sum(1).mean()


def mse_from_logits(logits: Tensor, labels: Tensor) -> Tensor:
    return mse(torch.softmax(logits, dim=1), labels)


def cross_entropy_from_logits(logits: Tensor, labels: Tensor) -> Tensor:
    return F.cross_entropy(logits, labels)


LOSSES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "mse": mse_from_logits,
    "cross_entropy": cross_entropy_from_logits,
}


def accuracy(scores: Tensor, labels: Tensor) -> float:
    """Share of rows whose highest score is the label (scores may be logits or probs)."""
    return float((scores.argmax(dim=1) == labels).float().mean())
