"""``OUTPUTS[train.output]``: logits to probabilities, the one place that choice is made;
``LOSSES[output][loss]``: logits and labels to the loss; ``Head``: how a trained model answers.
torch loads on use."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import torch
    from torch import Tensor


# The largest value that leaves at most 5% of a 10% val slice unsure for the notebook's model
# (docs/training.md): ``train.unsure_below``'s default.
UNSURE_BELOW = 0.4


NO_CLASS = -1  # the label of a training image that is none of the classes (train.characters)


def one_hot(labels: Tensor, num_classes: int, dtype: torch.dtype | None = None) -> Tensor:
    """``[B]`` -> ``[B, num_classes]``, float32 unless ``dtype``: the notebook's ``eye(10)[y]``;
    a ``NO_CLASS`` label gives a row of zeros."""
    import torch

    eye = torch.eye(num_classes + 1, dtype=dtype or torch.float32, device=labels.device)
    return eye[labels, :num_classes]  # NO_CLASS picks the extra row, all zeros here


def mse(probs: Tensor, labels: Tensor) -> Tensor:
    """The notebook's loss: ``((onehot(y) - p)^2).sum(1).mean()``; probs ``[B, C]``."""
    return (one_hot(labels, probs.shape[1], probs.dtype) - probs).pow(2).sum(1).mean()


def _softmax_cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """Cross-entropy; a ``NO_CLASS`` row's target is the uniform distribution (outlier
    exposure, Hendrycks et al. 2019)."""
    import torch
    import torch.nn.functional as F

    if bool((labels >= 0).all()):
        return F.cross_entropy(logits, labels)
    uniform = torch.full_like(logits, 1.0 / logits.shape[1])
    target = torch.where((labels < 0)[:, None], uniform, one_hot(labels, logits.shape[1]))
    return F.cross_entropy(logits, target)


def _sigmoid_cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """Binary cross-entropy per class, summed over classes, mean over the batch."""
    import torch.nn.functional as F

    target = one_hot(labels, logits.shape[1], logits.dtype)
    return F.binary_cross_entropy_with_logits(logits, target, reduction="none").sum(1).mean()


OUTPUTS: dict[str, Callable[[Tensor], Tensor]] = {
    "softmax": lambda logits: logits.softmax(dim=1),  # one distribution over the classes
    "sigmoid": lambda logits: logits.sigmoid(),  # each class's own probability
}

LOSSES: dict[str, dict[str, Callable[[Tensor, Tensor], Tensor]]] = {
    "softmax": {
        "mse": lambda logits, labels: mse(OUTPUTS["softmax"](logits), labels),
        "cross_entropy": _softmax_cross_entropy,
    },
    "sigmoid": {
        "mse": lambda logits, labels: mse(OUTPUTS["sigmoid"](logits), labels),
        "cross_entropy": _sigmoid_cross_entropy,
    },
}


def fit_temperature(logits: np.ndarray, labels: np.ndarray, output: str) -> float:
    """Temperature scaling (Guo et al. 2017): the T in [0.05, 20] minimising the negative
    log-likelihood of ``labels`` under ``output(logits / T)``, to 4 decimals."""
    import numpy as np
    import torch
    from scipy.optimize import minimize_scalar

    scores, targets = torch.from_numpy(np.asarray(logits, np.float64)), torch.from_numpy(labels)
    nll = LOSSES[output]["cross_entropy"]
    found = minimize_scalar(
        lambda log_t: float(nll(scores / math.exp(log_t), targets)),
        bounds=(math.log(0.05), math.log(20.0)),
        method="bounded",
    )
    return round(math.exp(found.x), 4)


def fit_top_sigmoid(logits: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Platt scaling of the top class (Platt 1999): the temperature T and shift b for which
    ``sigmoid(top logit / T + b)`` best predicts, by log-likelihood, whether the top class is
    the label; each to 4 decimals. Each class's own sigmoid says nothing of how often the top
    one is right, and a model trained on ``train.characters`` ranks digits low on all ten."""
    import numpy as np
    from scipy.optimize import minimize

    scores = np.asarray(logits, np.float64)
    top, right = scores.max(1), (scores.argmax(1) == labels).astype(np.float64)

    def nll(point: np.ndarray) -> float:
        z = top / math.exp(point[0]) + point[1]
        return float(np.mean(np.logaddexp(0.0, z) - right * z))  # -log sigmoid(±z)

    found = minimize(nll, np.zeros(2), method="Nelder-Mead", options={"xatol": 1e-6})
    log_t = min(max(found.x[0], math.log(0.05)), math.log(20.0))
    return round(math.exp(log_t), 4), round(float(found.x[1]), 4)


def calibrate(logits: np.ndarray, labels: np.ndarray, output: str) -> tuple[float, float]:
    """The ``(temperature, shift)`` that calibrate ``output``'s top probability on a val
    slice: temperature scaling for softmax, top-class Platt scaling for sigmoid."""
    if output == "sigmoid":
        return fit_top_sigmoid(logits, labels)
    return fit_temperature(logits, labels, output), 0.0


@dataclass(frozen=True)
class Head:
    """How a trained model answers: ``OUTPUTS[output]`` of its logits divided by
    ``temperature`` plus ``shift`` (fitted on the val slice by ``calibrate``; 1.0 and 0.0:
    none), and no class when its top probability is below ``unsure_below``. A model file holds
    a calibration key only where it is not the default, so an uncalibrated model keeps the
    bytes of one trained before calibration."""

    output: str = "softmax"
    temperature: float = 1.0
    unsure_below: float = UNSURE_BELOW
    shift: float = 0.0

    def probabilities(self, logits: Tensor) -> Tensor:
        scaled = logits if self.temperature == 1.0 else logits / self.temperature  # no node at 1
        return OUTPUTS[self.output](scaled + self.shift if self.shift else scaled)

    def metadata(self) -> dict[str, str]:
        kept = [f.name for f in fields(self)[1:] if getattr(self, f.name) != f.default]
        return {"output": self.output} | {k: str(getattr(self, k)) for k in kept}

    @classmethod
    def from_metadata(cls, meta: Mapping[str, str]) -> Head:
        """The head a model file describes; ``KeyError`` or ``ValueError`` if it cannot be."""
        head = cls(meta["output"], *(float(meta.get(f.name, f.default)) for f in fields(cls)[1:]))
        if head.output not in OUTPUTS:
            raise ValueError(f"output {head.output!r} is none of {list(OUTPUTS)}")
        if not 0 < head.temperature < math.inf:
            raise ValueError(f"temperature {meta['temperature']!r} is no positive number")
        if not math.isfinite(head.shift):
            raise ValueError(f"shift {meta['shift']!r} is no finite number")
        if not 0 <= head.unsure_below < 1:
            raise ValueError(f"unsure_below {meta['unsure_below']!r} is not in [0, 1)")
        return head
