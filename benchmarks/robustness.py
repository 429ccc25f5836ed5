"""Trust outside the test set: the default model and the presets trained on the embedded
MNIST sample, then scored on handwritten digits that are not MNIST and on drawn letters and
symbols (``checksets.py``), with and without their calibrating temperature.

    .venv/bin/python benchmarks/robustness.py [--preset default mlp cnn] [--kernels native]

Per model: test accuracy; accuracy on a fixed perturbed copy of the test set (``PERTURBED``,
seed 0: what ``evaluate`` would score as robustness); accuracy on the 3,594 real digits
(UCI, 43 writers); the fitted
temperature; the expected calibration error on the test split before and after it; and for
each candidate "unsure" threshold on the calibrated top probability, the share of test
images answered and their accuracy, the share of real digits answered "unsure" and the
share of letters and symbols answered "unsure". ``derived`` is the threshold the val slice
gives: the lowest that keeps its answered images >= 99% right. Writes
``benchmarks/results/robustness.md``. Training is in-process and seeded: the same figures
on every run on the same CPU kind.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from checksets import non_digits, real_digits
from common import REPO, markdown, write_results
from mnist_pipeline.core.params import load_section
from mnist_pipeline.data.geometry import perturb
from mnist_pipeline.data.params import DataParams
from mnist_pipeline.data.sources import IDX_FILES, fetch
from mnist_pipeline.data.splits import Split, read_raw_split
from mnist_pipeline.evaluation.calibration import expected_calibration_error
from mnist_pipeline.learning.losses import OUTPUTS
from mnist_pipeline.learning.models import predict_logits
from mnist_pipeline.learning.params import TrainParams
from mnist_pipeline.learning.training import holdout, train
from mnist_pipeline.tools.presets import load_presets

THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)
PERTURBED = {"rotate": 20.0, "shift": 3.0, "stroke": 1.0}  # the test set's seeded copy
VAL_ACCURACY = 0.99  # answered val images at least this often right: the derived threshold


def embedded_splits() -> tuple[Split, Split]:
    """The embedded sample's 4,000 train / 1,000 test digits, as the pipeline reads them."""
    with tempfile.TemporaryDirectory() as raw:
        manifest = fetch(DataParams(source="embedded"), Path(raw))
        train_split, test_split = (
            read_raw_split(Path(raw), images, labels, manifest)
            for images, labels in IDX_FILES.values()
        )
    return train_split, test_split


def preset_params(name: str, kernels: str | None) -> TrainParams:
    """params.yaml's train section, with the preset's settings on top ("default": none)."""
    base = load_section(REPO / "params.yaml", "train", TrainParams).model_dump()
    preset = {} if name == "default" else load_presets(REPO / "presets.yaml")[name]
    return TrainParams.model_validate(
        {**base, **preset, **({"kernels": kernels} if kernels else {})}
    )


def derived_threshold(top: np.ndarray, right: np.ndarray) -> float:
    """The lowest top probability above which the answered images are >= VAL_ACCURACY right."""
    order = np.argsort(-top, kind="stable")
    running = np.cumsum(right[order]) / np.arange(1, len(top) + 1)
    ok = np.nonzero(running >= VAL_ACCURACY)[0]
    return float(top[order][ok.max()]) if len(ok) else 1.0


def answered(probs: np.ndarray, labels: np.ndarray, threshold: float) -> str:
    """``share answered / accuracy on those`` at ``threshold``."""
    sure = probs.max(1) >= threshold
    right = probs.argmax(1) == labels
    return f"{sure.mean():.3f} / {right[sure].mean() if sure.any() else float('nan'):.3f}"


def score(name: str, splits: tuple[Split, Split], sets: dict, kernels: str | None) -> tuple:
    """The model ``name`` trains: its row, and one row per threshold (the derived first)."""
    params = preset_params(name, kernels)
    train_split, test_split = splits
    start = time.perf_counter()
    result = train(params, train_split, test_split)
    seconds = time.perf_counter() - start
    temperature = result.temperature

    def probs(images: np.ndarray, t: float = temperature) -> np.ndarray:
        logits = predict_logits(result.model, torch.from_numpy(images))
        return OUTPUTS[params.output](logits / t).numpy()

    def accuracy(p: np.ndarray, labels: np.ndarray) -> str:
        return f"{(p.argmax(1) == labels).mean():.3f}"

    labels = test_split.labels
    test, raw = probs(test_split.images), probs(test_split.images, 1.0)
    perturbed = probs(perturb(test_split.images, np.random.default_rng(0), **PERTURBED))
    digits, letters = probs(sets["digits"]), probs(sets["letters"]).max(1)
    val, val_probs, derived = None, None, ()
    if params.val_fraction > 0:
        val = holdout(train_split, params.val_fraction, params.seed)[1]
        val_probs = probs(val.images)
        derived = (derived_threshold(val_probs.max(1), val_probs.argmax(1) == val.labels),)
    ece = [expected_calibration_error(p, labels) for p in (raw, test)]
    row = [
        name, accuracy(test, labels), accuracy(perturbed, labels),
        accuracy(digits, sets["digit_labels"]), f"{temperature:.4f}",
        f"{ece[0]:.4f} -> {ece[1]:.4f}", f"{derived[0]:.3f}" if derived else "-", f"{seconds:.0f}",
    ]  # fmt: skip
    rows = [
        [
            name,
            f"{threshold:.3f}" + (" (derived)" if (threshold,) == derived else ""),
            answered(val_probs, val.labels, threshold) if val is not None else "-",
            answered(test, labels, threshold),
            f"{(digits.max(1) < threshold).mean():.3f}",
            f"{(letters < threshold).mean():.3f}",
        ]
        for threshold in (*derived, *THRESHOLDS)
    ]
    return row, rows


MODEL_COLUMNS = [
    *("model", "test acc", "perturbed test acc", "real-digit acc", "T"),
    *("test ECE before -> after", "derived threshold", "train s"),
]
THRESHOLD_COLUMNS = [
    *("model", "threshold", "val answered / acc", "test answered / acc"),
    *("real digits unsure", "letters unsure"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", nargs="+", default=["default", "mlp", "cnn"])
    parser.add_argument("--kernels", help="train.kernels for every model (default: its own)")
    args = parser.parse_args()
    splits = embedded_splits()
    digits, digit_labels = real_digits()
    sets = {"digits": digits, "digit_labels": digit_labels, "letters": non_digits()[0]}
    scored = [score(name, splits, sets, args.kernels) for name in args.preset]
    models = markdown([row for row, _ in scored], MODEL_COLUMNS)
    thresholds = markdown([row for _, rows in scored for row in rows], THRESHOLD_COLUMNS)
    write_results("robustness", f"{models}\n\n{thresholds}\n")


if __name__ == "__main__":
    main()
