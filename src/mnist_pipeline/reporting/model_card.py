"""The model card ending ``reports/report.md``, after "Model Cards for Model Reporting"
(Mitchell et al., 2019): data, parameters, metrics, intended use, limits and files."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mnist_pipeline.evaluation.scores import Metrics
from mnist_pipeline.learning.models import MODELS
from mnist_pipeline.reporting.report import as_written
from mnist_pipeline.reporting.text import escape_md

ARTIFACT = "mnist-classifier"  # dvc.yaml's `artifacts:`
TRAINING_KEYS = ("loss", "output", "optimizer", "lr", "batch_size", "epochs", "seed")


def model_card(manifest: Mapping[str, Any], train: Mapping[str, Any], metrics: Metrics) -> str:
    """The model card in markdown; ``train``: params.yaml's ``train`` section as written."""
    dataset = escape_md(manifest["dataset"])
    counts = manifest["counts"]
    model = str(train.get("model", "linear"))
    architecture, training = (
        ", ".join(f"{key} {as_written(train[key])}" for key in keys if key in train)
        for keys in (MODELS[model].settings if model in MODELS else (), TRAINING_KEYS)
    )
    scores = ", ".join(
        f"{name.replace('_', ' ')} {value:.4f}" for name, value in metrics.as_json().items()
    )
    sample = counts["train"] + counts["test"]
    sampled = f", and more so for this model, trained on the {sample:,}-image embedded sample"
    lines = [
        "## Model card",
        "",
        f"- **Model:** {escape_md(model)}"
        + (f" ({escape_md(architecture)})" if architecture else "")
        + (f"; {escape_md(training)}" if training else "")
        + ".",
        f"- **Data:** {dataset} from {escape_md(manifest['source'])}: {counts['train']:,} "
        f"training images, {counts['test']:,} test images (28×28 grayscale, one centred "
        "object each).",
        f"- **Metrics (test set):** {scores}.",
        f"- **Intended use:** trying and teaching: classifying one centred {dataset} image "
        "at a time, from the pipeline's data or from your own picture or drawing through "
        "`predict` and `serve`, which preprocess it the way MNIST was made.",
        "- **Limits:** the metrics hold for the dataset's own test set. Real images (a photo "
        "of handwriting, a drawing on a screen, other pens and strokes) are answered less "
        "accurately"
        + (sampled if manifest["source"] == "embedded" else "")
        + ". Every input gets one of the classes, even one that shows none of them; one "
        "object per image; not for decisions about people or documents.",
        "- **Files:** `models/model.onnx` (ONNX, checked against torch on the whole test set "
        "when the train stage writes it; run by `predict` and `serve` with onnxruntime) and "
        "`models/model.safetensors` (torch weights). Registered in `dvc.yaml` as the DVC artifact "
        f"`{ARTIFACT}`: `dvc artifacts get <repo> {ARTIFACT} --rev v1.0.0` after "
        f"`git tag -a {ARTIFACT}@v1.0.0`.",
        "",
    ]
    return "\n".join(lines)
