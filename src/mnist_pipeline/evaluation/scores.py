"""Scores from actual and predicted labels, and the typed headline metrics of a run.

``Metrics`` is ``metrics/eval.json``: one number per headline metric and nothing else,
since ``dvc exp show`` gives each a column. Each field is declared once here with its
label; adding a metric is a field here and its computation in ``headline``, and the
evaluate stage, the report, ``summary`` and ``compare`` follow the fields.

Per-class scores (``metrics/per_class.csv``) and confusion counts are detail, not metrics.
They need labels only (numpy and pandas, no scikit-learn, whose import the stages would
pay for), so the report stage derives them from ``metrics/predictions.csv`` with the
functions the evaluate stage uses.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from mnist_pipeline.core.errors import PipelineError
from mnist_pipeline.core.io import RERUN, read_csv, read_rows

DIGITS = 6  # decimals kept in metrics files: stable text, far below any real change
SCORES = ("precision", "recall", "f1")  # per-class columns of per_class.csv, besides support


def _headline(label: str, high: float = 1.0) -> Any:
    """A ``Metrics`` field: ``label`` is how the report and ``summary`` name it; its
    values lie in ``0..high`` (a tampered or broken file is refused, not rendered)."""
    return field(metadata={"label": label, "high": high})


@dataclass(frozen=True)
class Metrics:
    """The headline metrics of one run on the test split (``metrics/eval.json``)."""

    accuracy: float = _headline("test accuracy")
    loss: float = _headline("test loss", high=math.inf)  # a sum of squares or a -log p
    macro_f1: float = _headline("macro F1")

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The metric keys, in declaration order (the order tables show them in)."""
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def labels(cls) -> dict[str, str]:
        """Metric key -> the words a reader prints for it."""
        return {f.name: f.metadata["label"] for f in dataclasses.fields(cls)}

    def as_json(self) -> dict[str, float]:
        """The ``eval.json`` object: every metric, rounded to ``DIGITS`` decimals."""
        return {name: round(float(getattr(self, name)), DIGITS) for name in self.names()}

    @classmethod
    def from_json(cls, data: Any, where: str) -> Metrics:
        """Parse an ``eval.json`` object; ``where`` names the file in the one-line error."""
        fix = "; rerun the evaluate stage (`dvc repro evaluate`)"
        if not isinstance(data, Mapping):
            raise PipelineError(f"{where}: expected a JSON object of metrics{fix}")
        values = {}
        for name in cls.names():
            value = data.get(name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                state = "missing" if name not in data else f"not a number ({value!r})"
                raise PipelineError(f"{where}: metric {name!r} is {state}{fix}")
            high = dataclasses.fields(cls)[cls.names().index(name)].metadata["high"]
            if not math.isfinite(value) or not 0 <= value <= high:
                allowed = f" (allowed: 0 to {high:g})" if math.isfinite(value) else ""
                raise PipelineError(f"{where}: metric {name!r} is {value:g}{allowed}{fix}")
            values[name] = float(value)
        return cls(**values)


def headline(confusion: pd.DataFrame, loss: float) -> Metrics:
    """``Metrics`` from ``confusion_frame``'s counts and the test loss (unrounded scores)."""
    counts = confusion.to_numpy()
    _, _, f1, _ = per_class_scores(counts)
    return Metrics(
        accuracy=float(np.trace(counts) / counts.sum()),
        loss=loss,
        macro_f1=float(f1.mean()),
    )


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


def per_class_frame(confusion: pd.DataFrame) -> pd.DataFrame:
    """One row per class of ``confusion_frame``: ``class, precision, recall, f1, support``.

    Scores are rounded to ``DIGITS`` decimals, support is an int.
    """
    frame = pd.DataFrame({"class": [str(name) for name in confusion.index]})
    *scores, support = per_class_scores(confusion.to_numpy())
    for name, values in zip(SCORES, scores, strict=True):
        frame[name] = np.round(values, DIGITS)
    frame["support"] = support.astype(np.int64)
    return frame


def confusion_frame(
    actual: np.ndarray, predicted: np.ndarray, classes: tuple[str, ...]
) -> pd.DataFrame:
    """``[C, C]`` counts, index = actual, columns = predicted (the notebook's layout)."""
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
    counts = confusion.rename_axis(index="actual", columns="predicted").stack()  # row-major
    return counts.rename("count").reset_index()


def labels_of(names: pd.Series, classes: tuple[str, ...], where: str) -> np.ndarray:
    """Class names (a predictions.csv column) -> ``[N]`` int labels in ``classes``' order."""
    index = {name: i for i, name in enumerate(classes)}
    unknown = sorted(set(names) - set(index))
    if unknown:
        raise PipelineError(
            f"{where}: class {unknown[0]!r} is not one of the data's classes "
            f"({', '.join(classes)}); rerun the evaluate stage"
        )
    return names.map(index).to_numpy(dtype=np.int64)


class Prediction(BaseModel):
    """One row of ``metrics/predictions.csv``: class names, actual and predicted."""

    model_config = ConfigDict(extra="forbid")
    actual: str
    predicted: str


def read_predictions(path: Path, classes: tuple[str, ...], n_test: int) -> pd.DataFrame:
    """One row per test image, each naming classes the test split has."""
    frame = read_rows(path, Prediction, read_csv(path, dtype=str))
    if len(frame) != n_test:
        raise PipelineError(f"{path}: {len(frame)} rows for {n_test} test images{RERUN}")
    unknown = ~frame.isin(classes)
    if unknown.to_numpy().any():
        row, column = next(zip(*unknown.to_numpy().nonzero(), strict=True))
        value = frame.iat[row, column]
        raise PipelineError(
            f"{path}: row {row + 1} names class {value!r}, not one of the test split's "
            f"{len(classes)} classes{RERUN}"
        )
    return frame
