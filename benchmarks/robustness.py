"""Trust outside the test set: the default model and the presets trained on the embedded MNIST
sample, scored on handwritten digits that are not MNIST and on drawn letters and symbols
(``checksets.py``), with and without their calibrating temperature.

    .venv/bin/python benchmarks/robustness.py [--preset default mlp cnn] [--kernels native]

Per model: accuracy on the test set, its seeded perturbed copy and the real digits; the
temperature and the test ECE before -> after it. Per "unsure" threshold on the calibrated top
probability: val and test answered / accuracy, real digits and letters declined; ``derived``:
the lowest keeping the val slice's answered images >= 99% right.
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
from mnist_pipeline.learning.losses import OUTPUTS
from mnist_pipeline.learning.models import predict_logits
from mnist_pipeline.learning.params import TrainParams
from mnist_pipeline.learning.training import holdout, train
from mnist_pipeline.tools.presets import load_presets

THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)
PERTURBED = {"rotate": 20.0, "shift": 3.0, "stroke": 1.0}  # the test set's seeded copy
VAL_ACCURACY = 0.99  # answered val images at least this often right: the derived threshold
MODEL_COLUMNS = ["model", "test acc", "perturbed test acc", "real-digit acc", "T"]
MODEL_COLUMNS += ["test ECE before -> after", "derived threshold", "train s"]
THRESHOLD_COLUMNS = ["model", "threshold", "val answered / acc", "test answered / acc"]
THRESHOLD_COLUMNS += ["real digits unsure", "letters unsure"]


def derived_threshold(top: np.ndarray, right: np.ndarray) -> float:
    """The lowest top probability above which the answered images are >= VAL_ACCURACY right."""
    order = np.argsort(-top, kind="stable")
    running = np.cumsum(right[order]) / np.arange(1, len(top) + 1)
    ok = np.nonzero(running >= VAL_ACCURACY)[0]
    return float(top[order][ok.max()]) if len(ok) else 1.0


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

    def probs(images: np.ndarray, t: float = result.temperature) -> np.ndarray:
        logits = predict_logits(result.model, torch.from_numpy(images))
        return OUTPUTS[params.output](logits / t).numpy()

    calibrated, raw = probs(test.images), probs(test.images, 1.0)
    perturbed = probs(perturb(test.images, np.random.default_rng(0), **PERTURBED))
    digits, letters = probs(sets["digits"]), probs(sets["letters"]).max(1)
    val, val_probs, derived = None, None, ()
    if params.val_fraction > 0:
        val = holdout(train_split, params.val_fraction, params.seed)[1]
        val_probs = probs(val.images)
        derived = (derived_threshold(val_probs.max(1), val_probs.argmax(1) == val.labels),)
    ece = [expected_calibration_error(p, test.labels) for p in (raw, calibrated)]
    row = [
        name, accuracy(calibrated, test.labels), accuracy(perturbed, test.labels),
        accuracy(digits, sets["digit_labels"]), f"{result.temperature:.4f}",
        f"{ece[0]:.4f} -> {ece[1]:.4f}", f"{derived[0]:.3f}" if derived else "-", f"{seconds:.0f}",
    ]  # fmt: skip
    rows = [
        [name, f"{threshold:.3f}" + (" (derived)" if (threshold,) == derived else ""),
         answered(val_probs, val.labels, threshold) if val is not None else "-",
         answered(calibrated, test.labels, threshold),
         f"{(digits.max(1) < threshold).mean():.3f}", f"{(letters < threshold).mean():.3f}"]
        for threshold in (*derived, *THRESHOLDS)
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
    scored = [score(name, splits, sets, args.kernels) for name in args.preset]
    models = ([row for row, _ in scored], MODEL_COLUMNS)
    thresholds = ([row for _, rows in scored for row in rows], THRESHOLD_COLUMNS)
    write_results("robustness", "Robustness: the embedded sample", models, thresholds)


if __name__ == "__main__":
    main()
