"""How honest a model's confidence is: its reliability diagram (accuracy against the top
probability, in equal-width bins) and the expected calibration error that sums it up."""

from __future__ import annotations

import numpy as np
import pandas as pd


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
