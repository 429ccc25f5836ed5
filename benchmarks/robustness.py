"""Trust outside the test set: the default model and the presets trained on the embedded MNIST
sample, scored on handwritten digits that are not MNIST and on drawn letters and symbols
(``checksets.py``), with and without their calibrating temperature.

    .venv/bin/python benchmarks/robustness.py [--preset default mlp cnn] [--kernels native]

Per model: accuracy on the test set, its seeded perturbed copy and the real digits; the
temperature (and shift) and the test ECE before -> after them. Per "unsure" threshold on the
calibrated top probability: val and test answered / accuracy, real digits declined, letters
declined (DejaVu; Debian's handwriting fonts, where installed); ``shipped``: the model's own
``train.unsure_below``; ``derived``: the largest (to 2 decimals) that leaves at most 5% of the val
slice unsure, the rule behind ``train.unsure_below``'s default.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from checksets import non_digits, real_digits
from common import REPO, read_splits, write_results
from mnist_pipeline.core.params import load_section
from mnist_pipeline.data.geometry import perturb
from mnist_pipeline.evaluation.scores import expected_calibration_error
from mnist_pipeline.learning.losses import Head
from mnist_pipeline.learning.models import predict_logits
from mnist_pipeline.learning.params import TrainParams
from mnist_pipeline.learning.training import holdout, train
from mnist_pipeline.tools.presets import load_presets

THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)
LETTERS = ("letters", "handwriting")  # DejaVu; Debian's handwriting fonts
PERTURBED = {"rotate": 20.0, "shift": 3.0, "stroke": 1.0}  # the test set's seeded copy
VAL_UNSURE = 0.05  # the derived threshold leaves at most this share of the val slice unsure
MODEL_COLUMNS = ["model", "test acc", "perturbed test acc", "real-digit acc", "T, shift"]
MODEL_COLUMNS += ["test ECE before -> after", "derived threshold", "train s"]
THRESHOLD_COLUMNS = ["model", "threshold", "val answered / acc", "test answered / acc"]
THRESHOLD_COLUMNS += ["real digits unsure", "letters unsure", "handwriting-font letters unsure"]


def derived_threshold(top: np.ndarray) -> float:
    """The largest threshold, to 2 decimals, below which at most VAL_UNSURE of ``top`` falls."""
    return max(t / 100 for t in range(100) if (top < t / 100).mean() <= VAL_UNSURE)


def answered(probs: np.ndarray, labels: np.ndarray, threshold: float) -> str:
    """``share answered / accuracy on those`` at ``threshold``."""
    sure, right = probs.max(1) >= threshold, probs.argmax(1) == labels
    return f"{sure.mean():.3f} / {right[sure].mean() if sure.any() else float('nan'):.3f}"


def accuracy(probs: np.ndarray, labels: np.ndarray) -> str:
    return f"{(probs.argmax(1) == labels).mean():.3f}"


def score(name: str, splits: tuple, sets: dict, kernels: str | None) -> tuple[list, list]:
    """Model ``name`` (params.yaml's train, a preset on top): its row, and one row per
    threshold (the derived first)."""
    base = load_section(REPO / "params.yaml", "train", TrainParams).model_dump()
    preset = {} if name == "default" else load_presets(REPO / "presets.yaml")[name]
    params = TrainParams.model_validate(
        {**base, **preset, **({"kernels": kernels} if kernels else {})}
    )
    (train_split, test), start = splits, time.perf_counter()
    result = train(params, train_split, test)
    seconds = time.perf_counter() - start
    head = Head(params.output, result.temperature, params.unsure_below, result.shift)

    def probs(images: np.ndarray, calibrated: Head = head) -> np.ndarray:
        logits = predict_logits(result.model, torch.from_numpy(images))
        return calibrated.probabilities(logits).numpy()

    calibrated, raw = probs(test.images), probs(test.images, Head(params.output))
    perturbed = probs(perturb(test.images, np.random.default_rng(0), **PERTURBED))
    digits = probs(sets["digits"])
    letters = [probs(sets[key]).max(1) if len(sets[key]) else [] for key in LETTERS]
    val, val_probs, derived = None, None, ()
    if params.val_fraction > 0:
        val = holdout(train_split, params.val_fraction, params.seed)[1]
        val_probs = probs(val.images)
        derived = (derived_threshold(val_probs.max(1)),)
    ece = [expected_calibration_error(p, test.labels) for p in (raw, calibrated)]
    row = [
        name, accuracy(calibrated, test.labels), accuracy(perturbed, test.labels),
        accuracy(digits, sets["digit_labels"]), f"{result.temperature:.4f}, {result.shift:.4f}",
        f"{ece[0]:.4f} -> {ece[1]:.4f}", f"{derived[0]:.3f}" if derived else "-", f"{seconds:.0f}",
    ]  # fmt: skip
    shipped = params.unsure_below
    rows = [
        [name, f"{threshold:.3f}" + (" (shipped)" if threshold == shipped else "")
         + (" (derived)" if (threshold,) == derived else ""),
         answered(val_probs, val.labels, threshold) if val is not None else "-",
         answered(calibrated, test.labels, threshold),
         f"{(digits.max(1) < threshold).mean():.3f}",
         *(f"{(top < threshold).mean():.3f}" if len(top) else "-" for top in letters)]
        for threshold in dict.fromkeys((shipped, *derived, *THRESHOLDS))
    ]  # fmt: skip
    return row, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", nargs="+", default=["default", "mlp", "cnn"])
    parser.add_argument("--kernels", help="train.kernels for every model (default: its own)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as raw:
        splits = read_splits("mnist-embedded", Path(raw))
    digits, digit_labels = real_digits()
    sets = {"digits": digits, "digit_labels": digit_labels, "letters": non_digits()[0]}
    sets["handwriting"] = non_digits(handwriting=True)[0]
    scored = [score(name, splits, sets, args.kernels) for name in args.preset]
    models = ([row for row, _ in scored], MODEL_COLUMNS)
    thresholds = ([row for _, rows in scored for row in rows], THRESHOLD_COLUMNS)
    write_results("robustness", "Robustness: the embedded sample", models, thresholds)


if __name__ == "__main__":
    main()
