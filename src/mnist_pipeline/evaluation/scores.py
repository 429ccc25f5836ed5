"""The headline metrics of a run (``HEADLINE``, ``Metrics``) and the scores read off labels.

A headline metric is one ``HEADLINE`` entry: ``eval.json`` holds one number per entry (``dvc
exp show`` gives each a column), and the report, ``summary`` and ``compare`` follow the registry.
Per-class scores and confusion counts are detail; they need labels only (numpy, no
scikit-learn import), so the report stage derives them from ``predictions.csv`` with these
functions.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from mnist_pipeline.core.errors import PipelineError
from mnist_pipeline.core.io import RERUN, read_csv, read_rows

DIGITS = 6  # decimals kept in metrics files: stable text, far below any real change
SCORES = ("precision", "recall", "f1")  # per-class columns of per_class.csv, besides support


@dataclass(frozen=True)
class Outcome:
    """What a headline metric is computed from: ``[N]`` actual and predicted labels, the
    ``[N, C]`` class probabilities, the ``[C, C]`` confusion counts and the mean test loss."""

    actual: np.ndarray
    predicted: np.ndarray
    probabilities: np.ndarray
    counts: np.ndarray
    loss: float


@dataclass(frozen=True)
class Headline:
    """A headline metric: ``label`` names it for a reader, ``compute`` scores an ``Outcome``,
    its values lie in ``0..high`` (a tampered or broken eval.json is refused, not rendered)."""

    label: str
    compute: Callable[[Outcome], float]
    high: float = 1.0


HEADLINE: dict[str, Headline] = {
    "accuracy": Headline("test accuracy", lambda o: np.trace(o.counts) / o.counts.sum()),
    "loss": Headline("test loss", lambda o: o.loss, high=math.inf),  # a sum of squares or -log p
    "macro_f1": Headline("macro F1", lambda o: per_class_scores(o.counts)[2].mean()),
}


class Metrics(dict[str, float]):
    """The headline metrics of one run (``metrics/eval.json``), in ``HEADLINE``'s order."""

    @staticmethod
    def names() -> tuple[str, ...]:
        return tuple(HEADLINE)

    @staticmethod
    def labels() -> dict[str, str]:
        return {name: metric.label for name, metric in HEADLINE.items()}

    @classmethod
    def of(cls, outcome: Outcome) -> Metrics:
        return cls({name: float(metric.compute(outcome)) for name, metric in HEADLINE.items()})

    def as_json(self) -> dict[str, float]:
        """The ``eval.json`` object: every metric, rounded to ``DIGITS`` decimals."""
        return {name: round(float(self[name]), DIGITS) for name in HEADLINE}

    @classmethod
    def from_json(cls, data: Any, where: str) -> Metrics:
        """Parse an ``eval.json`` object; ``where`` names the file in the one-line error."""
        fix = "; rerun the evaluate stage (`dvc repro evaluate`)"
        if not isinstance(data, Mapping):
            raise PipelineError(f"{where}: expected a JSON object of metrics{fix}")
        for name, metric in HEADLINE.items():
            value = data.get(name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                state = "missing" if name not in data else f"not a number ({value!r})"
                raise PipelineError(f"{where}: metric {name!r} is {state}{fix}")
            if not math.isfinite(value) or not 0 <= value <= metric.high:
                allowed = f" (allowed: 0 to {metric.high:g})" if math.isfinite(value) else ""
                raise PipelineError(f"{where}: metric {name!r} is {value:g}{allowed}{fix}")
        return cls({name: float(data[name]) for name in HEADLINE})


def per_class_scores(counts: np.ndarray) -> tuple[np.ndarray, ...]:
    """Precision, recall, F1 (``2 tp / (2 tp + fp + fn)``) and support per class from
    confusion counts; a class never predicted or never present scores 0, as scikit-learn's
    ``zero_division=0``."""
    tp = np.diag(counts).astype(np.float64)
    predicted, support = counts.sum(0), counts.sum(1)

    def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
        return np.divide(num, den, out=np.zeros_like(num), where=den > 0)

    f1 = ratio(2 * tp, (predicted + support).astype(np.float64))
    return ratio(tp, predicted), ratio(tp, support), f1, support


def per_class_frame(confusion: pd.DataFrame) -> pd.DataFrame:
    """``class, precision, recall, f1, support`` per class, scores rounded to ``DIGITS``."""
    frame = pd.DataFrame({"class": [str(name) for name in confusion.index]})
    *scores, support = per_class_scores(confusion.to_numpy())
    for name, values in zip(SCORES, scores, strict=True):
        frame[name] = np.round(values, DIGITS)
    frame["support"] = support.astype(np.int64)
    return frame


def confusion_frame(
    actual: np.ndarray, predicted: np.ndarray, classes: tuple[str, ...]
) -> pd.DataFrame:
    """``[C, C]`` int64 counts, index = actual, columns = predicted (the notebook's layout)."""
    size = len(classes)
    counts = np.bincount(actual * size + predicted, minlength=size * size).reshape(size, size)
    return pd.DataFrame(counts, pd.Index(classes, name="actual"), list(classes))


def confusion_counts(confusion: pd.DataFrame) -> pd.DataFrame:
    """``actual, predicted, count`` rows, row-major in class order with zeros: the long
    format DVC's plot templates need (Vega-Lite cannot fold a matrix of unknown classes)."""
    counts = confusion.rename_axis(index="actual", columns="predicted").stack()
    return counts.rename("count").reset_index()


class Prediction(BaseModel):
    """One row of ``metrics/predictions.csv``."""

    model_config = ConfigDict(extra="forbid")
    actual: str
    predicted: str


def read_predictions(
    path: Path, classes: tuple[str, ...], n_test: int
) -> tuple[np.ndarray, np.ndarray]:
    """``[N]`` actual and predicted labels of predictions.csv, one row per test image."""
    frame = read_rows(path, Prediction, read_csv(path, dtype=str))
    if len(frame) != n_test:
        raise PipelineError(f"{path}: {len(frame)} rows for {n_test} test images{RERUN}")
    labels = frame.apply(pd.Index(classes).get_indexer).to_numpy()
    if (labels < 0).any():
        row, column = np.argwhere(labels < 0)[0]
        raise PipelineError(
            f"{path}: row {row + 1} names class {frame.iat[row, column]!r}, not one of the "
            f"test split's {len(classes)} classes{RERUN}"
        )
    return labels[:, 0], labels[:, 1]
