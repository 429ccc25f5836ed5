"""The run report, ``reports/report.md``: the data's provenance as its title (a result on the
embedded sample is never mistaken for a full-MNIST one), the params as written, the headline
metrics, each figure with its numbers, and a model card (after "Model Cards for Model
Reporting", Mitchell et al., 2019)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from mnist_pipeline.data.params import UNTRACKED
from mnist_pipeline.evaluation.scores import HEADLINE, Metrics
from mnist_pipeline.learning.models import MODELS
from mnist_pipeline.reporting.text import as_written, escape_md, markdown_table, plain

ARTIFACT = "mnist-classifier"  # dvc.yaml's `artifacts:`
TRAINING_KEYS = ("loss", "output", "optimizer", "lr", "batch_size", "epochs", "seed")


def provenance(manifest: Mapping[str, Any]) -> str:
    """``mnist — embedded data (4,000 train / 1,000 test images)``, from manifest.json."""
    counts = manifest["counts"]
    data = f"{plain(manifest['dataset'])} — {plain(manifest['source'])} data"
    return f"{data} ({counts['train']:,} train / {counts['test']:,} test images)"


def headline(metrics: Metrics) -> str:
    """``test accuracy 0.8620, test cross-entropy 0.4512, macro F1 0.8606``: every metric."""
    values = metrics.as_json().items()
    return ", ".join(f"{HEADLINE[name].label} {value:.4f}" for name, value in values)


def relevant_train_params(train: Mapping[str, Any]) -> dict[str, Any]:
    """The ``train`` params that shaped this run: a linear model lists no layer sizes, a
    constant rate no step size, a run without a validation slice no best-epoch settings."""
    every_model_setting = {key for entry in MODELS.values() for key in entry.settings}
    model = MODELS.get(train.get("model", "linear"))
    unused = every_model_setting - set(model.settings if model else every_model_setting)
    unused |= {"momentum"} if train.get("optimizer", "sgd") != "sgd" else set()
    validating = float(train.get("val_fraction") or 0) > 0
    unused |= {"keep", "monitor", "patience"} if not validating else set()
    unused |= set() if train.get("keep") == "best" or train.get("patience") else {"monitor"}
    unused |= {"step_size", "gamma"} if train.get("schedule") != "step" else set()
    return {key: value for key, value in train.items() if key not in unused}


def params_table(params: Mapping[str, Any]) -> pd.DataFrame:
    """``param, value`` rows as params.yaml spells them, less the settings no stage tracks
    (``UNTRACKED``) and the ``train`` settings this run does not use."""
    shown = {
        name: {k: v for k, v in (section or {}).items() if f"{name}.{k}" not in UNTRACKED}
        for name, section in params.items()
    }
    shown["train"] = relevant_train_params(shown.get("train", {}))
    flat = pd.json_normalize(shown, sep=".").to_dict("records")[0]
    return pd.Series(flat, dtype=object).map(as_written).rename_axis("param").to_frame("value")


def model_card(manifest: Mapping[str, Any], train: Mapping[str, Any], metrics: Metrics) -> str:
    """The model card in markdown; ``train``: params.yaml's ``train`` section as written."""
    model, counts = str(train.get("model", "linear")), manifest["counts"]
    architecture, training = (
        ", ".join(f"{key} {as_written(train[key])}" for key in keys if key in train)
        for keys in (MODELS[model].settings if model in MODELS else (), TRAINING_KEYS)
    )
    described = model + (f" ({architecture})" if architecture else "")
    described += f"; {training}" if training else ""
    sample = counts["train"] + counts["test"]
    sampled = f", and more so for this model, trained on the {sample:,}-image embedded sample"
    dataset = escape_md(manifest["dataset"])
    return f"""## Model card

- **Model:** {escape_md(described)}.
- **Data:** {dataset} from {escape_md(manifest["source"])}: {counts["train"]:,} training images, \
{counts["test"]:,} test images (28×28 grayscale, one centred object each).
- **Metrics (test set):** {headline(metrics)}.
- **Intended use:** trying and teaching: classifying one centred {dataset} image at a time, \
from the pipeline's data or from your own picture or drawing through `predict` and `serve`, \
which preprocess it the way MNIST was made.
- **Limits:** the metrics hold for the dataset's own test set. Real images (a photo of \
handwriting, a drawing on a screen, other pens and strokes) are answered less accurately\
{sampled if manifest["source"] == "embedded" else ""}. Every input gets one of the classes, \
even one that shows none of them; one object per image; not for decisions about people or \
documents.
- **Files:** `models/model.onnx` (ONNX, checked against torch on the whole test set when the \
train stage writes it; run by `predict` and `serve` with onnxruntime) and \
`models/model.safetensors` (torch weights). Registered in `dvc.yaml` as the DVC artifact \
`{ARTIFACT}`: `dvc artifacts get <repo> {ARTIFACT} --rev v1.0.0` after \
`git tag -a {ARTIFACT}@v1.0.0`.
"""


def render_markdown(
    manifest: Mapping[str, Any],
    params: Mapping[str, Any],
    metrics: Metrics,
    history: pd.DataFrame,
    confusion: pd.DataFrame,
    per_class: pd.DataFrame,
    figures_dir: str,
) -> str:
    """The report: provenance, params (``params``: the sections as written), headline
    metrics, each figure of ``figures_dir`` with its numbers, the model card."""
    values = metrics.as_json()
    accuracy, n_test = values.pop("accuracy"), int(per_class["support"].sum())
    files = pd.DataFrame.from_dict(manifest["files"], orient="index").rename_axis("file")
    files = files[["shape", "sha256", "verified"]].assign(sha256=files["sha256"].str[:16] + "…")
    lines = ["# " + escape_md(provenance(manifest)), ""]
    lines += [f"> **Warning:** {escape_md(warning)}\n" for warning in manifest.get("warnings", [])]
    lines += [
        "## Data provenance",
        "",
        f"- dataset: {escape_md(manifest['dataset'])}",
        f"- source: {escape_md(manifest['source'])} "
        f"(requested: {escape_md(manifest['requested_source'])})",
        f"- from: {escape_md(manifest['origin'])}",
        "",
        markdown_table(files),
        "",
        "## Parameters (as in params.yaml; those this model and run use)",
        "",
        markdown_table(params_table(params)),
        "",
        "## Headline metrics",
        "",
        f"- **{HEADLINE['accuracy'].label}: {accuracy:.4f}** on {n_test:,} images",
        *(f"- {HEADLINE[name].label}: {value:.4f}" for name, value in values.items()),
        "",
    ]
    sections = [  # heading, figure (reports/figures/<name>.png), table
        ("Training, per epoch", "learning_curve", history.set_index("epoch")),
        ("Confusion matrix (rows = actual, columns = predicted)", None, confusion),
        ("Per-class scores", None, per_class.set_index("class")),
        ("First test images (true → predicted; red = wrong)", "test_predictions", None),
        ("Most confident mistakes (true → predicted, confidence)", "misclassified", None),
    ]
    for heading, figure, table in sections:
        lines += [f"## {heading}", ""]
        if figure:
            lines += [f"![{figure.replace('_', ' ')}]({figures_dir}/{figure}.png)", ""]
        lines += [markdown_table(table), ""] if table is not None else []
    return "\n".join(lines) + "\n" + model_card(manifest, params.get("train") or {}, metrics)
