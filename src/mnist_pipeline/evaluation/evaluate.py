"""Scoring a trained model on the test split: metrics, per-class scores, confusion, predictions.

The confusion matrix is ``[actual, predicted]`` counts, the notebook's
``to1hot(y).T @ to1hot(yhat)``; the stage decides where each table goes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from mnist_pipeline.core.errors import PipelineError
from mnist_pipeline.data.splits import Split
from mnist_pipeline.evaluation.scores import Metrics, Outcome, confusion_frame, per_class_frame
from mnist_pipeline.learning.losses import LOSSES
from mnist_pipeline.learning.models import ModelSpec, predict_logits


@dataclass(frozen=True)
class Evaluation:
    metrics: Metrics
    per_class: pd.DataFrame  # one row per class: class, precision, recall, f1, support
    confusion: pd.DataFrame  # [C, C] counts, index = actual, columns = predicted
    predictions: pd.DataFrame  # one row per test image: actual, predicted


def probabilities(logits: torch.Tensor, output: str) -> np.ndarray:
    """``[N, C]``: softmax, or each class's own sigmoid."""
    return (torch.softmax(logits, dim=1) if output == "softmax" else torch.sigmoid(logits)).numpy()


def evaluate(
    model: nn.Module,
    spec: ModelSpec,
    split: Split,
    loss_name: str,
    output: str = "softmax",
    model_path: str = "the model",
) -> Evaluation:
    """Score ``model`` (built from ``spec``, saved at ``model_path``) on ``split`` with the
    loss it was trained on."""
    if spec.in_features != split.images.shape[1] or spec.num_classes != split.num_classes:
        raise PipelineError(
            f"{model_path}: takes {spec.in_features} features / {spec.num_classes} classes but the "
            f"test data has {split.images.shape[1]} / {split.num_classes}; rerun the train stage"
        )
    logits = predict_logits(model, torch.from_numpy(split.images))  # no autograd graph
    loss = float(LOSSES[output][loss_name](logits, torch.from_numpy(split.labels)))
    predicted = logits.argmax(dim=1).numpy()
    confusion = confusion_frame(split.labels, predicted, split.classes)
    outcome = Outcome(
        split.labels, predicted, probabilities(logits, output), confusion.to_numpy(), loss
    )
    names = np.asarray(split.classes, dtype=object)
    predictions = pd.DataFrame({"actual": names[split.labels], "predicted": names[predicted]})
    return Evaluation(Metrics.of(outcome), per_class_frame(confusion), confusion, predictions)


def confidence(model: nn.Module, split: Split, output: str = "softmax") -> np.ndarray:
    """``[N]``: the probability the model gives its own prediction for each image of ``split``,
    what "confidently wrong" sorts by."""
    logits = predict_logits(model, torch.from_numpy(split.images))
    return probabilities(logits, output).max(axis=1)
