"""The run report: ``build_figures`` draws the named figures, ``render_markdown`` writes the
text that links them. The data's provenance heads the title and every figure, so a result on
the embedded sample is never mistaken for a full-MNIST one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from mnist_pipeline.data.splits import IMAGE_SIDE, Split
from mnist_pipeline.evaluation.scores import SCORES, Metrics
from mnist_pipeline.reporting.figures import bar_chart, heatmap, learning_curves
from mnist_pipeline.reporting.text import escape_md, markdown_table, plain

FIGURES = {
    "learning_curve": "learning_curve.png",
    "confusion": "confusion_matrix.png",
    "per_class": "per_class_scores.png",
    "predictions": "test_predictions.png",
    "misclassified": "misclassified.png",
}
# The report's section heading for each figure, in report.md's order.
HEADINGS = {
    "learning_curve": "Training, per epoch",
    "confusion": "Confusion matrix (rows = actual, columns = predicted)",
    "per_class": "Per-class scores",
    "predictions": "First test images (true → predicted; red = wrong)",
    "misclassified": "Most confidently wrong test images (true → predicted, confidence)",
}


def provenance(manifest: Mapping[str, Any]) -> str:
    """``mnist — embedded data (4,000 train / 1,000 test images)``, from manifest.json."""
    counts = manifest["counts"]
    data = f"{plain(manifest['dataset'])} — {plain(manifest['source'])} data"
    return f"{data} ({counts['train']:,} train / {counts['test']:,} test images)"


def image_grid(
    split: Split,
    predicted: np.ndarray,
    indices: np.ndarray,
    title: str,
    confidence: np.ndarray | None = None,
) -> Figure:
    """Test images ``indices``, 10 a row, titled ``#index true → pred`` (and the ``confidence``),
    wrong ones red; none gives a figure that says so, so the report never links a missing file.

    The images are tiles of one picture on one axes: an axes per image would take most of the
    report stage's drawing time.
    """
    cols = min(max(len(indices), 1), 10)
    rows = max(-(-len(indices) // cols), 1)
    tile_width, tile_height = IMAGE_SIDE + 4, IMAGE_SIDE + (8 if confidence is None else 12)
    sheet = np.full((rows * tile_height, cols * tile_width), np.nan)  # NaN: blank paper
    height = 1.45 * rows * tile_height / (IMAGE_SIDE + 8) + 0.6
    fig = Figure(figsize=(max(1.25 * cols, 3.2), height), layout="constrained")
    ax = fig.subplots()
    ax.axis("off")
    for k, index in enumerate(indices):
        top, left = (k // cols + 1) * tile_height - IMAGE_SIDE, k % cols * tile_width
        sheet[top : top + IMAGE_SIDE, left : left + IMAGE_SIDE] = split.images[index].reshape(
            IMAGE_SIDE, IMAGE_SIDE
        )
        actual, guess = int(split.labels[index]), int(predicted[index])
        caption = f"#{index}\n{split.classes[actual]} → {split.classes[guess]}"
        if confidence is not None:
            caption += f"\n{confidence[index]:.1%}"
        color = "black" if actual == guess else "tab:red"
        x, y = left + IMAGE_SIDE / 2 - 0.5, top - 1.5  # centred just above the tile
        ax.text(x, y, caption, ha="center", va="bottom", fontsize=7, color=color)
    ax.imshow(sheet, cmap="gray_r", vmin=0, vmax=1)
    if not len(indices):
        ax.text(0.5, 0.5, "none", ha="center", va="center", fontsize=12, transform=ax.transAxes)
    fig.suptitle(title, fontsize=10)
    return fig


def misclassified_grid(
    split: Split, predicted: np.ndarray, confidence: np.ndarray, n_images: int
) -> Figure:
    """The ``n_images`` wrong predictions of highest confidence, most confident first (ties by
    index)."""
    wrong = np.flatnonzero(split.labels != np.asarray(predicted))
    shown = wrong[np.lexsort((wrong, -confidence[wrong]))][:n_images]
    title = (
        f"Most confidently wrong test images: {len(shown)} of {len(wrong)} "
        "(true → predicted, confidence)"
    )
    return image_grid(split, predicted, shown, title, confidence)


def build_figures(
    history: pd.DataFrame,
    confusion: pd.DataFrame,
    split: Split,
    predicted: np.ndarray,
    n_images: int,
    per_class: pd.DataFrame,
    subtitle: str,
    confidence: np.ndarray,
) -> dict[str, Figure]:
    """Every figure of the report, keyed like ``FIGURES``, ``subtitle`` under each title."""
    first = np.arange(min(n_images, len(split)))
    norm = Normalize(vmin=0, vmax=max(int(confusion.to_numpy().max(initial=0)), 1))
    scores = per_class.set_index("class")[list(SCORES)]
    figures = {
        "learning_curve": learning_curves([("", history)]),
        "confusion": heatmap([("Confusion matrix", confusion)], norm),
        "per_class": bar_chart(scores, "Per-class scores (test set)", "score"),
        "predictions": image_grid(split, predicted, first, "First test images (true → predicted)"),
        "misclassified": misclassified_grid(split, predicted, confidence, n_images),
    }
    for fig in figures.values():
        fig.suptitle("\n".join(filter(None, (fig.get_suptitle(), subtitle))), fontsize=10)
    return figures


def as_written(value: Any) -> str:
    """A params value the way params.yaml spells it: ``[128]``, ``null``, ``true``, ``0.01``."""
    return value if isinstance(value, str) else json.dumps(value)


def relevant_train_params(train: Mapping[str, Any]) -> dict[str, Any]:
    """The ``train`` params that shaped this run: a linear model lists no layer sizes, a
    constant rate no step size, a run without a validation slice no best-epoch settings."""
    from mnist_pipeline.learning.models import MODELS

    every_model_setting = {key for entry in MODELS.values() for key in entry.settings}
    model = MODELS.get(train.get("model", "linear"))
    unused = every_model_setting - set(model.settings if model else every_model_setting)
    unused |= {"momentum"} if train.get("optimizer", "sgd") != "sgd" else set()
    validating = float(train.get("val_fraction") or 0) > 0
    unused |= {"keep", "monitor", "patience"} if not validating else set()
    unused |= set() if train.get("keep") == "best" or train.get("patience") else {"monitor"}
    unused |= {"step_size", "gamma"} if train.get("schedule") != "step" else set()
    return {key: value for key, value in train.items() if key not in unused}


def shown_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """The params sections as written, less the settings no stage tracks
    (``config.UNTRACKED``) and the ``train`` settings this run does not use."""
    from mnist_pipeline.data.params import UNTRACKED

    shown = {
        name: {k: v for k, v in (section or {}).items() if f"{name}.{k}" not in UNTRACKED}
        for name, section in params.items()
    }
    return {**shown, "train": relevant_train_params(shown.get("train", {}))}


def render_markdown(
    manifest: dict[str, Any],
    params: dict[str, Any],
    metrics: Metrics,
    history: pd.DataFrame,
    confusion: pd.DataFrame,
    per_class: pd.DataFrame,
    figures_dir: str,
) -> str:
    """The report: provenance, params (as written), headline ``metrics`` (the loss named by
    ``train.loss``), then each figure with its numbers."""
    loss_name = params.get("train", {}).get("loss")
    labels = Metrics.labels()
    if loss_name:
        labels["loss"] += f" ({loss_name})"
    values = metrics.as_json()
    n_test = int(per_class["support"].sum())
    # Accuracy in bold with the test-set size, then the others in HEADLINE's order.
    headline = [f"- **{labels['accuracy']}: {values.pop('accuracy'):.4f}** on {n_test:,} images"]
    headline += [f"- {labels[name]}: {value:.4f}" for name, value in values.items()]
    files = pd.DataFrame.from_dict(manifest["files"], orient="index").rename_axis("file")
    files = files[["shape", "sha256", "verified"]].assign(sha256=files["sha256"].str[:16] + "…")
    flat = pd.Series(
        pd.json_normalize(shown_params(params), sep=".").to_dict("records")[0], dtype=object
    )
    written = flat.map(as_written).rename_axis("param").to_frame("value")
    lines = ["# " + escape_md(provenance(manifest)), ""]
    for warning in manifest.get("warnings", []):
        lines += [f"> **Warning:** {escape_md(warning)}", ""]
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
        markdown_table(written),
        "",
        "## Headline metrics",
        "",
        *headline,
        "",
    ]
    tables = {
        "learning_curve": history.set_index("epoch"),
        "confusion": confusion,
        "per_class": per_class.set_index("class"),
    }
    for key, heading in HEADINGS.items():
        alt = FIGURES[key].removesuffix(".png").replace("_", " ")
        lines += [f"## {heading}", "", f"![{alt}]({figures_dir}/{FIGURES[key]})", ""]
        lines += [markdown_table(tables[key]), ""] if key in tables else []
    return "\n".join(lines)
