"""The human-readable run report: markdown text and matplotlib figures.

``build_figures`` returns named figures (learning curve, confusion heatmap with counts,
a grid of test images with true/predicted labels); ``render_markdown`` returns the report
text that links them. Data provenance comes first, so nobody mistakes a result on the
5,000-digit embedded sample for a full-MNIST one. The stage saves both through ``io``.
"""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display; must precede pyplot

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from mnist_pipeline.data import IMAGE_SIDE, Split

FIGURES = {
    "learning_curve": "learning_curve.png",
    "confusion": "confusion_matrix.png",
    "predictions": "test_predictions.png",
}


def accuracy_column(history: pd.DataFrame) -> str:
    """``test_accuracy`` (the notebook's per-epoch test score) or ``val_accuracy``."""
    return next(c for c in history.columns if c.endswith("_accuracy"))


def learning_curve(history: pd.DataFrame) -> Figure:
    """Train loss and test (or validation) accuracy per epoch, side by side."""
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.4), layout="constrained")
    ax_loss.plot(history["epoch"], history["train_loss"], marker="o", color="tab:red")
    ax_loss.set(xlabel="epoch", ylabel="mean train loss", title="Train loss")
    column = accuracy_column(history)
    ax_acc.plot(history["epoch"], history[column], marker="o", color="tab:blue")
    scored_on = "Test" if column.startswith("test") else "Validation"
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title=f"{scored_on} accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    return fig


def confusion_heatmap(confusion: pd.DataFrame, title: str = "Confusion matrix") -> Figure:
    """Counts heatmap, rows = actual, columns = predicted, the count written in each cell."""
    counts = confusion.to_numpy()
    size = max(5.0, 0.55 * len(counts) + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size), layout="constrained")
    image = ax.imshow(counts, cmap="Blues")
    fig.colorbar(image, ax=ax, shrink=0.8)
    ticks = np.arange(len(counts))
    ax.set_xticks(ticks, confusion.columns, rotation=45, ha="right")
    ax.set_yticks(ticks, confusion.index)
    ax.set(xlabel="predicted", ylabel="actual", title=title)
    threshold = counts.max() / 2 if counts.size else 0
    for (row, col), value in np.ndenumerate(counts):
        color = "white" if value > threshold else "black"
        ax.text(col, row, str(value), ha="center", va="center", color=color, fontsize=8)
    return fig


def prediction_grid(split: Split, predicted: np.ndarray, n_images: int) -> Figure:
    """The first ``n_images`` test images, titled ``true/pred``; wrong ones in red."""
    n = min(n_images, len(split))
    cols = min(n, 10)
    rows = -(-n // cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(1.2 * cols, 1.45 * rows), squeeze=False, layout="constrained"
    )
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        actual = int(split.labels[i])
        image = split.images[i].reshape(IMAGE_SIDE, IMAGE_SIDE).numpy()
        ax.imshow(image, cmap="gray_r")
        ok = actual == predicted[i]
        ax.set_title(
            f"{split.classes[actual][:8]}\n→ {split.classes[predicted[i]][:8]}",
            fontsize=7,
            color="black" if ok else "tab:red",
        )
    return fig


def build_figures(
    history: pd.DataFrame,
    confusion: pd.DataFrame,
    split: Split,
    predicted: np.ndarray,
    n_images: int,
) -> dict[str, Figure]:
    return {
        "learning_curve": learning_curve(history),
        "confusion": confusion_heatmap(confusion),
        "predictions": prediction_grid(split, predicted, n_images),
    }


def _table(frame: pd.DataFrame, index: bool = True) -> str:
    """A GitHub-markdown table without needing the optional ``tabulate`` package."""
    frame = frame.reset_index() if index else frame
    header = "| " + " | ".join(str(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    rows = ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def _flatten(prefix: str, value: Any) -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        return [item for k, v in value.items() for item in _flatten(f"{prefix}.{k}", v)]
    return [(prefix, value)]


def render_markdown(
    manifest: dict[str, Any],
    params: dict[str, Any],
    metrics: dict[str, Any],
    history: pd.DataFrame,
    confusion: pd.DataFrame,
    figures_dir: str,
) -> str:
    counts = manifest["counts"]
    n_train, n_test = counts["train"], counts["test"]
    title = (
        f"# {manifest['dataset']} — {manifest['source']} data "
        f"({n_train:,} train / {n_test:,} test images)"
    )
    lines = [title, ""]
    for warning in manifest.get("warnings", []):
        lines += [f"> **Warning:** {warning}", ""]
    lines += [
        "## Data provenance",
        "",
        f"- dataset: `{manifest['dataset']}`",
        f"- source: `{manifest['source']}` (requested: `{manifest['requested_source']}`)",
        f"- from: {manifest['origin']}",
        "",
        _table(
            pd.DataFrame(
                [
                    {"file": name, "shape": entry["shape"], "sha256": entry["sha256"][:16] + "…"}
                    | {"verified": entry["verified"]}
                    for name, entry in manifest["files"].items()
                ]
            ),
            index=False,
        ),
        "",
        "## Parameters",
        "",
        _table(
            pd.DataFrame(
                [
                    {"param": key, "value": value}
                    for name, section in params.items()
                    for key, value in _flatten(name, section)
                ]
            ),
            index=False,
        ),
        "",
        "## Headline metrics",
        "",
        f"- **test accuracy: {metrics['accuracy']:.4f}** on {metrics['n_test']:,} images",
        f"- test loss ({metrics['loss_name']}): {metrics['loss']:.4f}",
        f"- macro precision / recall / F1: {metrics['macro_precision']:.4f} / "
        f"{metrics['macro_recall']:.4f} / {metrics['macro_f1']:.4f}",
        "",
        "## Training, per epoch",
        "",
        f"![learning curve]({figures_dir}/{FIGURES['learning_curve']})",
        "",
        _table(history.round(4), index=False),
        "",
        "## Confusion matrix (rows = actual, columns = predicted)",
        "",
        f"![confusion matrix]({figures_dir}/{FIGURES['confusion']})",
        "",
        _table(confusion),
        "",
        "## Per-class scores",
        "",
        _table(pd.DataFrame(metrics["per_class"]).T.rename_axis("class")),
        "",
        "## First test images (true → predicted; red = wrong)",
        "",
        f"![test predictions]({figures_dir}/{FIGURES['predictions']})",
        "",
    ]
    return "\n".join(lines)
