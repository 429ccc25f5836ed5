"""Scoring a trained model on the test split (the evaluate stage): metrics, per-class scores,
the confusion matrix (``[actual, predicted]`` counts, the notebook's ``to1hot(y).T @
to1hot(yhat)``), each image's prediction and the reliability table of its calibrated
probabilities; the stage decides where each table goes. Robustness is the accuracy on a fixed,
seeded perturbed copy of the test images (``ROBUSTNESS``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from mnist_pipeline.core.errors import PipelineError
from mnist_pipeline.data.geometry import perturb
from mnist_pipeline.data.splits import Split
from mnist_pipeline.evaluation import scores
from mnist_pipeline.learning.losses import Head
from mnist_pipeline.learning.models import ModelSpec, predict_logits

ROBUSTNESS = {"rotate": 20.0, "shift": 3.0, "stroke": 1.0}  # data.geometry.perturb, seed 0
ANSWER_ALL = Head(unsure_below=0.0)  # softmax, uncalibrated, never unsure


@dataclass(frozen=True)
class Evaluation:
    metrics: scores.Metrics
    per_class: pd.DataFrame  # one row per class: class, precision, recall, f1, support
    confusion: pd.DataFrame  # [C, C] counts, index = actual, columns = predicted
    predictions: pd.DataFrame  # one row per test image: actual, predicted, confidence
    reliability: pd.DataFrame  # one row per confidence bin: bin, confidence, accuracy, count


def evaluate(
    model: nn.Module, spec: ModelSpec, split: Split, head: Head = ANSWER_ALL, where: str = "model"
) -> Evaluation:
    """Score ``model`` (built from ``spec``, saved at ``where``) on ``split``; ``head`` turns
    its logits into calibrated class probabilities and says when it is unsure."""
    if spec.in_features != split.images.shape[1] or spec.num_classes != split.num_classes:
        raise PipelineError(
            f"{where}: takes {spec.in_features} features / {spec.num_classes} classes but the "
            f"test data has {split.images.shape[1]} / {split.num_classes}; rerun the train stage"
        )
    logits = predict_logits(model, torch.from_numpy(split.images))  # no autograd graph
    probabilities = head.probabilities(logits.double()).numpy()
    predicted = logits.argmax(dim=1).numpy()
    perturbed = perturb(split.images, np.random.default_rng(0), **ROBUSTNESS)
    robust = predict_logits(model, torch.from_numpy(perturbed)).argmax(dim=1).numpy()
    confusion = scores.confusion_frame(split.labels, predicted, split.classes)
    counts, unsure = confusion.to_numpy(), head.unsure_below
    outcome = scores.Outcome(split.labels, predicted, probabilities, counts, robust, unsure)
    names = np.asarray(split.classes, dtype=object)
    confidence = probabilities[np.arange(len(split)), predicted].round(scores.DIGITS)
    predictions = pd.DataFrame(
        {"actual": names[split.labels], "predicted": names[predicted], "confidence": confidence}
    )
    table = scores.reliability(probabilities, split.labels).round(scores.DIGITS)
    metrics = scores.Metrics.of(outcome)
    return Evaluation(metrics, scores.per_class_frame(confusion), confusion, predictions, table)
