"""Temperature scaling: the one number T that makes ``output(logits / T)`` honest
probabilities, fitted on held-out data after training (Guo et al. 2017, "On Calibration of
Modern Neural Networks"). It changes no prediction, only the confidence."""

from __future__ import annotations

import math

import numpy as np
import torch

from mnist_pipeline.learning.losses import LOSSES

BOUNDS = (0.05, 20.0)  # the temperatures searched


def fit_temperature(logits: np.ndarray, labels: np.ndarray, output: str) -> float:
    """The T in ``BOUNDS`` minimising the negative log-likelihood of ``labels`` under
    ``output(logits / T)`` (``[N, C]``, ``[N]``), searched over log T, to 4 decimals."""
    from scipy.optimize import minimize_scalar  # only runs with a val slice

    scores, targets = torch.from_numpy(np.asarray(logits, np.float64)), torch.from_numpy(labels)
    nll = LOSSES[output]["cross_entropy"]
    found = minimize_scalar(
        lambda log_t: float(nll(scores / math.exp(log_t), targets)),
        bounds=tuple(math.log(t) for t in BOUNDS),
        method="bounded",
    )
    return round(math.exp(found.x), 4)
