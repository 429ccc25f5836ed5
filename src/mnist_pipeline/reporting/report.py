"""``reports/report.md``: the data's provenance as its title (a result on the embedded sample is
never mistaken for a full-MNIST one), params, metrics, figures, tables and a model card. Text
from files is made safe: ``plain`` is one line of printable characters; ``escape_md`` also
escapes HTML and markdown, so ``"x\\n## INJECTED <img onerror=...>"`` stays literal text."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Mapping
from typing import Any

import pandas as pd

from mnist_pipeline.evaluation.scores import HEADLINE, Metrics
from mnist_pipeline.learning.models import MODELS

ARTIFACT = "mnist-classifier"  # dvc.yaml's `artifacts:`
TRAINING_KEYS = ("loss", "output", "optimizer", "lr", "batch_size", "epochs", "seed")
# Backslashed: code spans, emphasis, table cells, headings; "](" is broken so no link forms.
MARKDOWN = re.compile(r"([\\`*|#])")


def plain(value: object) -> str:
    text = " ".join(str(value).split())  # newlines and tabs -> one space
    return "".join(c if c.isprintable() else "\N{REPLACEMENT CHARACTER}" for c in text)


def escape_md(value: object) -> str:
    return html.escape(MARKDOWN.sub(r"\\\1", plain(value)).replace("](", "]\\("), quote=False)


def markdown_table(frame: pd.DataFrame) -> str:
    """``frame`` and its index as a table: floats with 4 decimals, all else escaped."""
    cells = frame.reset_index().map(
        lambda value: f"{value:.4f}" if isinstance(value, float) else escape_md(value)
    )
    return cells.rename(columns=escape_md).to_markdown(index=False, disable_numparse=True)


def as_written(value: Any) -> str:
    """A params value as params.yaml spells it: ``[128]``, ``null``, ``true``, ``0.01``."""
    return value if isinstance(value, str) else json.dumps(value)


def provenance(manifest: Mapping[str, Any]) -> str:
    """``mnist — embedded data (4,000 train / 1,000 test images)``."""
    counts = manifest["counts"]
    data = f"{plain(manifest['dataset'])} — {plain(manifest['source'])} data"
    return f"{data} ({counts['train']:,} train / {counts['test']:,} test images)"


def headline(metrics: Metrics) -> str:
    """``test accuracy 0.8620, test cross-entropy 0.4512, macro F1 0.8606``."""
    return ", ".join(f"{HEADLINE[k].label} {value:.4f}" for k, value in metrics.as_json().items())


def relevant_train_params(train: Mapping[str, Any]) -> dict[str, Any]:
    """The ``train`` params that shaped this run (a linear model has no layer sizes, ...)."""
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
    """``param, value`` rows as written, less the unused ``train`` settings."""
    rows: dict[str, str] = {}
    for name, section in params.items():
        section = relevant_train_params(section or {}) if name == "train" else section or {}
        rows |= {f"{name}.{key}": as_written(value) for key, value in section.items()}
    return pd.Series(rows, dtype=object).rename_axis("param").to_frame("value")


def model_card(manifest: Mapping[str, Any], train: Mapping[str, Any], metrics: Metrics) -> str:
    """The model card (after Mitchell et al., 2019); ``train``: params.yaml's, as written."""
    model, counts = str(train.get("model", "linear")), manifest["counts"]
    settings = MODELS[model].settings if model in MODELS else ()
    architecture = ", ".join(f"{k} {as_written(train[k])}" for k in settings if k in train)
    training = ", ".join(f"{k} {as_written(train[k])}" for k in TRAINING_KEYS if k in train)
    described = model + (f" ({architecture})" if architecture else "")
    described += f"; {training}" if training else ""
    sample = counts["train"] + counts["test"]
    sampled = f", more so for this model, trained on the {sample:,}-image embedded sample"
    dataset = escape_md(manifest["dataset"])
    return f"""## Model card

- **Model:** {escape_md(described)}.
- **Data:** {dataset} from {escape_md(manifest["source"])}: {counts["train"]:,} training images, \
{counts["test"]:,} test images (28×28 grayscale, one centred object each).
- **Metrics (test set):** {headline(metrics)}.
- **Intended use:** trying and teaching: one centred {dataset} image at a time, through \
`predict` and `serve`, which preprocess it the way MNIST was made.
- **Limits:** real images (photos, drawings, other pens) are answered less accurately than the \
test set{sampled if manifest["source"] == "embedded" else ""}; every input gets one of the \
classes; not for decisions about people or documents.
- **Files:** `models/model.onnx` (run by `predict` and `serve`) and `models/model.safetensors`, \
the DVC artifact `{ARTIFACT}`: `dvc artifacts get <repo> {ARTIFACT} --rev v1.0.0` after \
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
    """The report; ``params``: the sections as params.yaml writes them."""
    files = pd.DataFrame.from_dict(manifest["files"], orient="index").rename_axis("file")
    files = files[["shape", "sha256", "verified"]].assign(sha256=files["sha256"].str[:16] + "…")
    scores = [f"- {HEADLINE[name].label}: {value:.4f}" for name, value in metrics.as_json().items()]
    scores[0] = f"- **{scores[0][2:]}** on {int(per_class['support'].sum()):,} images"  # accuracy
    blocks = [  # each followed by a blank line
        f"# {escape_md(provenance(manifest))}",
        *(f"> **Warning:** {escape_md(warning)}" for warning in manifest.get("warnings", [])),
        "## Data provenance",
        f"- dataset: {escape_md(manifest['dataset'])}\n"
        f"- source: {escape_md(manifest['source'])} "
        f"(requested: {escape_md(manifest['requested_source'])})\n"
        f"- from: {escape_md(manifest['origin'])}",
        markdown_table(files),
        "## Parameters (as in params.yaml; those this model and run use)",
        markdown_table(params_table(params)),
        "## Headline metrics",
        "\n".join(scores),
        "## Training, per epoch",
        f"![learning curve]({figures_dir}/learning_curve.png)",
        markdown_table(history.set_index("epoch")),
        "## Confusion matrix (rows = actual, columns = predicted)",
        markdown_table(confusion),
        "## Per-class scores",
        markdown_table(per_class.set_index("class")),
        "## First test images (true → predicted; red = wrong)",
        f"![test predictions]({figures_dir}/test_predictions.png)",
        "## Most confident mistakes (true → predicted, confidence)",
        f"![misclassified]({figures_dir}/misclassified.png)",
        model_card(manifest, params.get("train") or {}, metrics),
    ]
    return "\n\n".join(blocks)
