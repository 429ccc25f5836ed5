"""Scoring a trained model on the test split: metrics, confusion matrix, predictions.

``evaluate`` returns plain Python/pandas objects; the stage decides where they go.
The confusion matrix is ``[actual, predicted]`` counts (rows = actual), as the notebook's
``to1hot(y).T @ to1hot(yhat)``; per-class precision/recall/F1 are read off it (a few lines
of numpy, checked against scikit-learn in the tests, that spare the stage sklearn's
~1.3 s import).
``confusion_counts`` reshapes it to one ``actual, predicted, count`` row per cell for
DVC's heatmap template (``.dvc/plots/confusion_heatmap.json``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from mnist_pipeline.core.errors import PipelineError
from mnist_pipeline.data.splits import Split
from mnist_pipeline.learning.losses import make_loss
from mnist_pipeline.learning.models import ModelSpec, predict_logits


@dataclass(frozen=True)
class Evaluation:
    metrics: dict[str, Any]
    confusion: pd.DataFrame  # [C, C] counts, index = actual, columns = predicted
    predictions: pd.DataFrame  # one row per test image: actual, predicted


def confusion_matrix(actual: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """``[C, C]`` int64 counts, rows = actual class, columns = predicted class."""
    cells = np.bincount(actual * num_classes + predicted, minlength=num_classes * num_classes)
    return cells.reshape(num_classes, num_classes)


def per_class_scores(counts: np.ndarray) -> tuple[np.ndarray, ...]:
    """Precision, recall, F1 and support per class from ``[C, C]`` confusion counts.

    A class never predicted (or never present) scores 0 there, as scikit-learn's
    ``zero_division=0``; F1 is ``2 tp / (2 tp + fp + fn)``, sklearn's formula.
    """
    tp = np.diag(counts).astype(np.float64)
    predicted, support = counts.sum(0), counts.sum(1)

    def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
        return np.divide(num, den, out=np.zeros_like(num), where=den > 0)

    f1 = ratio(2 * tp, (predicted + support).astype(np.float64))
    return ratio(tp, predicted), ratio(tp, support), f1, support


def confusion_frame(
    actual: np.ndarray, predicted: np.ndarray, classes: tuple[str, ...]
) -> pd.DataFrame:
    counts = confusion_matrix(actual, predicted, len(classes))
    frame = pd.DataFrame(counts, index=list(classes), columns=list(classes))
    frame.index.name = "actual"
    return frame


def confusion_counts(confusion: pd.DataFrame) -> pd.DataFrame:
    """The ``[C, C]`` matrix as ``C*C`` rows of ``actual, predicted, count``.

    Row-major in class order (actual 0 with predicted 0..C-1, then actual 1, ...), zeros
    included, so the file is deterministic and a plot keeps the class order. This is the
    long format DVC's plot templates need: Vega-Lite cannot fold the wide matrix without
    hard-coding the dataset's class names.
    """
    actual = np.repeat(confusion.index.to_numpy(dtype=object), len(confusion.columns))
    predicted = np.tile(confusion.columns.to_numpy(dtype=object), len(confusion.index))
    # to_numpy() is [C, C] row-major, so ravel() lines up with repeat/tile above.
    counts = confusion.to_numpy().ravel()
    return pd.DataFrame({"actual": actual, "predicted": predicted, "count": counts})


def evaluate(
    model: nn.Module,
    spec: ModelSpec,
    split: Split,
    loss_name: str,
    output: str = "softmax",
    source: str = "the model",
) -> Evaluation:
    """Score ``model`` (built from ``spec``) on ``split`` with the loss it was trained on.

    ``source`` names the model (its file) in the error when it does not fit the data.
    """
    if spec.in_features != split.images.shape[1] or spec.num_classes != split.num_classes:
        raise PipelineError(
            f"{source}: takes {spec.in_features} features / {spec.num_classes} classes but the "
            f"test data has {split.images.shape[1]} / {split.num_classes}; rerun the train stage"
        )
    logits = predict_logits(model, torch.from_numpy(split.images))
    with torch.no_grad():
        loss = float(make_loss(loss_name, output)(logits, torch.from_numpy(split.labels)))
    actual = split.labels
    predicted = logits.argmax(dim=1).numpy()
    confusion = confusion_frame(actual, predicted, split.classes)
    precision, recall, f1, support = per_class_scores(confusion.to_numpy())
    per_class = {
        name: {
            "precision": round(float(precision[i]), 6),
            "recall": round(float(recall[i]), 6),
            "f1": round(float(f1[i]), 6),
            "support": int(support[i]),
        }
        for i, name in enumerate(split.classes)
    }
    metrics = {
        "accuracy": round(float((actual == predicted).mean()), 6),
        "loss": round(loss, 6),
        "loss_name": loss_name,
        "output": output,
        "macro_precision": round(float(precision.mean()), 6),
        "macro_recall": round(float(recall.mean()), 6),
        "macro_f1": round(float(f1.mean()), 6),
        "n_test": len(actual),
        "dataset": split.dataset,
        "source": split.source,
        "per_class": per_class,
    }
    class_names = np.asarray(split.classes, dtype=object)
    predictions = pd.DataFrame({"actual": class_names[actual], "predicted": class_names[predicted]})
    return Evaluation(metrics, confusion, predictions)
