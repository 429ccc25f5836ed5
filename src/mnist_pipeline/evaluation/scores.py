"""The headline metrics (``HEADLINE``: one number each in ``eval.json``, one column each in ``dvc
exp show``; the report follows it) and the scores read off labels with numpy alone, so the
report stage derives them from ``predictions.csv`` without torch. Calibration: the reliability
diagram (accuracy against the top probability, in equal-width bins) and the expected
calibration error that sums it up.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from mnist_pipeline.core.errors import PipelineError
from mnist_pipeline.core.io import RERUN, read_csv, read_rows

DIGITS = 6  # decimals kept in metrics files: stable text, far below any real change
SCORES = ("precision", "recall", "f1")  # per-class columns of per_class.csv, besides support
MIN_PROBABILITY = 1e-15  # a confident miss costs -log(1e-15) = 34.5 nats, not infinity


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> pd.DataFrame:
    """One row per non-empty bin of the top probability (``(k/bins, (k+1)/bins]``): ``bin``
    (k), its mean ``confidence``, the ``accuracy`` of its predictions and their ``count``."""
    top = probs.max(axis=1)
    frame = pd.DataFrame({"confidence": top, "accuracy": probs.argmax(axis=1) == labels})
    which = np.clip(np.ceil(top * bins).astype(int) - 1, 0, bins - 1)
    table = frame.groupby(which).agg(
        confidence=("confidence", "mean"), accuracy=("accuracy", "mean"), count=("accuracy", "size")
    )
    return table.rename_axis("bin").reset_index()


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """The bins' |accuracy - confidence|, weighted by their share of the images."""
    table = reliability(probs, labels, bins)
    gap = (table["accuracy"] - table["confidence"]).abs()
    return float((gap * table["count"]).sum() / max(len(labels), 1))


@dataclass(frozen=True)
class Outcome:
    """``[N]`` actual and predicted labels, ``[N, C]`` calibrated probabilities, ``[C, C]``
    counts."""

    actual: np.ndarray
    predicted: np.ndarray
    probabilities: np.ndarray
    counts: np.ndarray
    robust: np.ndarray | None = None  # [N] predicted labels of the perturbed test images
    unsure_below: float = 0.0  # the top probability below which the model does not answer


@dataclass(frozen=True)
class Headline:
    """A headline metric: ``label`` names it for a reader, ``compute`` scores an ``Outcome``,
    its values lie in ``0..high`` (a tampered or broken eval.json is refused, not rendered)."""

    label: str
    compute: Callable[[Outcome], float]
    high: float = 1.0


def cross_entropy(o: Outcome) -> float:
    """Mean ``-log p[true class]``, rows normalised to sum to 1 (per-class sigmoids need not),
    clipped at ``MIN_PROBABILITY``: the same measure whatever loss the model was trained on."""
    total = np.maximum(o.probabilities.sum(axis=1), np.finfo(np.float64).tiny)
    true = o.probabilities[np.arange(len(o.actual)), o.actual] / total
    return float(-np.log(np.clip(true, MIN_PROBABILITY, 1.0)).mean())


def answered(o: Outcome) -> np.ndarray:
    """``[N]``: the images the model answers, their top probability at least ``unsure_below``."""
    return o.probabilities.max(axis=1) >= o.unsure_below


def answered_accuracy(o: Outcome) -> float:
    """The accuracy on the images answered; 0 when none is."""
    sure = answered(o)
    return float((o.predicted == o.actual)[sure].mean()) if sure.any() else 0.0


HEADLINE: dict[str, Headline] = {
    "accuracy": Headline("test accuracy", lambda o: np.trace(o.counts) / o.counts.sum()),
    "cross_entropy": Headline("test cross-entropy", cross_entropy, -math.log(MIN_PROBABILITY)),
    "macro_f1": Headline("macro F1", lambda o: per_class_scores(o.counts)[2].mean()),
    "ece": Headline(
        "calibration error", lambda o: expected_calibration_error(o.probabilities, o.actual)
    ),
    "robust_accuracy": Headline("perturbed-test accuracy", lambda o: np.mean(o.robust == o.actual)),
    "answered": Headline("share answered", lambda o: answered(o).mean()),
    "answered_accuracy": Headline("accuracy when answered", answered_accuracy),
}


class Metrics(dict[str, float]):
    """The headline metrics of one run (``metrics/eval.json``), in ``HEADLINE``'s order."""

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
    with np.errstate(invalid="ignore"):  # 0 / 0 -> nan -> 0
        scores = np.nan_to_num([tp / predicted, tp / support, 2 * tp / (predicted + support)])
    return (*scores, support)


def per_class_frame(confusion: pd.DataFrame) -> pd.DataFrame:
    """``class, precision, recall, f1, support`` per class, scores rounded to ``DIGITS``."""
    *scores, support = per_class_scores(confusion.to_numpy())
    rounded = {name: np.round(values, DIGITS) for name, values in zip(SCORES, scores, strict=True)}
    classes = confusion.index.astype(str)
    return pd.DataFrame({"class": classes, **rounded, "support": support.astype(np.int64)})


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
    """One row of ``metrics/predictions.csv``: the probability the model gave its answer."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    actual: str
    predicted: str
    confidence: float = Field(ge=0.0, le=1.0)


def read_predictions(path: Path, classes: tuple[str, ...], n_test: int) -> tuple[np.ndarray, ...]:
    """``[N]`` actual and predicted labels and confidences: predictions.csv, a row per image."""
    frame = read_rows(path, Prediction, read_csv(path, dtype=str))
    if len(frame) != n_test:
        raise PipelineError(f"{path}: {len(frame)} rows for {n_test} test images{RERUN}")
    labels = frame[["actual", "predicted"]].apply(pd.Index(classes).get_indexer).to_numpy()
    if (labels < 0).any():
        row, column = np.argwhere(labels < 0)[0]
        raise PipelineError(
            f"{path}: row {row + 1} names class {frame.iat[row, column]!r}, not one of the "
            f"test split's {len(classes)} classes{RERUN}"
        )
    return labels[:, 0], labels[:, 1], frame["confidence"].astype(np.float64).to_numpy()
