"""The human-readable run report: markdown text and matplotlib figures.

``build_figures`` returns named figures (learning curve, confusion heatmap with counts,
per-class precision/recall/F1 bars, the first test images with true → predicted labels,
and the first misclassified ones); ``render_markdown`` returns the report text that links
them. Data provenance comes first — in the report's title and in every figure's title — so
nobody mistakes a result on the 5,000-digit embedded sample for a full-MNIST one. The
stage (``stages/report.py``, run by ``dvc repro``) saves both through ``io``.

``draw_cells`` is the heatmap-with-numbers drawing shared with ``compare``.
"""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display; must precede pyplot

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.image import AxesImage

from mnist_pipeline.data.splits import IMAGE_SIDE, Split
from mnist_pipeline.evaluation.scores import SCORES, Metrics
from mnist_pipeline.reporting.text import escape_md, plain

FIGURES = {
    "learning_curve": "learning_curve.png",
    "confusion": "confusion_matrix.png",
    "per_class": "per_class_scores.png",
    "predictions": "test_predictions.png",
    "misclassified": "misclassified.png",
}
# Above this many classes (an EMNIST-size idx set) cells get no numbers and figures stop
# growing: 200 classes would otherwise be 40,000 text objects and gigabytes of memory.
MAX_LABELLED_CLASSES = 30
MAX_INCHES = 24.0


def provenance(dataset: str, source: str, n_train: int, n_test: int) -> str:
    """``mnist — embedded data (4,000 train / 1,000 test images)``: titles say what was run."""
    return f"{plain(dataset)} — {plain(source)} data ({n_train:,} train / {n_test:,} test images)"


def accuracy_column(history: pd.DataFrame) -> str:
    """``test_accuracy`` (the notebook's per-epoch test score) or ``val_accuracy``."""
    return next(c for c in history.columns if c.endswith("_accuracy"))


def epoch_ticks(ax: Axes, epochs: pd.Series) -> None:
    """Whole-number epoch ticks: every epoch when there are few (a 1-epoch run included)."""
    values = sorted(set(int(e) for e in epochs))
    if len(values) <= 12:
        ax.set_xticks(values)
    else:
        ax.xaxis.get_major_locator().set_params(integer=True)


def learning_curve(history: pd.DataFrame, subtitle: str = "") -> Figure:
    """Train loss and test (or validation) accuracy per epoch, side by side."""
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.6), layout="constrained")
    if subtitle:
        fig.suptitle(subtitle, fontsize=10)
    ax_loss.plot(history["epoch"], history["train_loss"], marker="o", color="tab:red")
    ax_loss.set(xlabel="epoch", ylabel="mean train loss", title="Train loss")
    column = accuracy_column(history)
    ax_acc.plot(history["epoch"], history[column], marker="o", color="tab:blue")
    scored_on = "Test" if column.startswith("test") else "Validation"
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title=f"{scored_on} accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        epoch_ticks(ax, history["epoch"])
    return fig


def draw_cells(
    ax: Axes,
    frame: pd.DataFrame,
    cmap: str,
    norm: Normalize,
    signed: bool = False,
) -> AxesImage:
    """Draw a ``[C, C]`` count frame as a heatmap with the value written in each cell.

    Rows = actual (``frame.index``), columns = predicted. ``signed`` writes ``+3``/``-3``
    (for differences, on a scale centred at 0) and greys out zeros. Text turns white on dark
    cells: counts above half the scale's top, differences beyond 60 % of its half-width.
    """
    values = frame.to_numpy()
    image = ax.imshow(values, cmap=cmap, norm=norm)
    ticks = np.arange(len(frame.columns))
    ax.set_xticks(ticks, [str(c) for c in frame.columns], rotation=45, ha="right")
    ax.set_yticks(np.arange(len(frame.index)), [str(i) for i in frame.index])
    ax.set(xlabel="predicted", ylabel="actual")
    span = max(abs(norm.vmin or 0), abs(norm.vmax or 0), 1)
    if len(frame.columns) > MAX_LABELLED_CLASSES:
        return image
    for (row, col), value in np.ndenumerate(values):
        if signed:
            text = f"{value:+d}" if value else "0"
            dark = abs(value) > 0.6 * span
        else:
            text = str(value)
            dark = value > 0.5 * (norm.vmax or 0)
        color = "white" if dark else ("lightgray" if signed and not value else "black")
        ax.text(col, row, text, ha="center", va="center", color=color, fontsize=8)
    return image


def confusion_heatmap(
    confusion: pd.DataFrame, title: str = "Confusion matrix", subtitle: str = ""
) -> Figure:
    """Counts heatmap, rows = actual, columns = predicted, the count written in each cell."""
    counts = confusion.to_numpy()
    size = min(max(5.0, 0.55 * len(counts) + 2), MAX_INCHES)
    fig, ax = plt.subplots(figsize=(size + 1, size), layout="constrained")
    norm = Normalize(vmin=0, vmax=max(int(counts.max()) if counts.size else 0, 1))
    image = draw_cells(ax, confusion, "Blues", norm)
    fig.colorbar(image, ax=ax, shrink=0.8)
    ax.set_title(title)
    if subtitle:
        fig.suptitle(subtitle, fontsize=10)
    return fig


def per_class_bars(per_class: pd.DataFrame, subtitle: str = "") -> Figure:
    """Precision, recall and F1 of each class (``per_class_frame``'s rows), grouped bars."""
    classes = per_class["class"].astype(str).tolist()
    width = min(max(7.0, 0.75 * len(classes) + 2), MAX_INCHES)
    fig, ax = plt.subplots(figsize=(width, 3.8), layout="constrained")
    width = 0.8 / len(SCORES)
    x = np.arange(len(classes))
    colors = ("tab:blue", "tab:orange", "tab:green")
    # Three bars per class, centred on the class's tick: offsets -width, 0, +width.
    for i, (score, color) in enumerate(zip(SCORES, colors, strict=True)):
        ax.bar(x + (i - 1) * width, per_class[score], width, label=score, color=color)
    # Full class names ("Ankle boot"), turned when they would collide.
    turn = len(classes) > 10 or max(map(len, classes), default=0) > 5
    ax.set_xticks(x, classes, rotation=45 if turn else 0, ha="right" if turn else "center")
    ax.set(xlabel="class", ylabel="score", ylim=(0, 1.02), title="Per-class scores (test set)")
    # Legend outside the axes: bars reach 1.0 and would hide under it.
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    ax.grid(axis="y", alpha=0.3)
    if subtitle:
        fig.suptitle(subtitle, fontsize=10)
    return fig


def image_grid(
    split: Split, predicted: np.ndarray, indices: np.ndarray, title: str, subtitle: str = ""
) -> Figure:
    """Test images ``indices`` (``[n]`` into ``split``), titled ``#index true → pred``.

    Wrong predictions are red. At most 10 per row; an empty ``indices`` gives a figure that
    says so, so the report never links a missing file.
    """
    n = len(indices)
    cols = min(max(n, 1), 10)
    rows = max(-(-n // cols), 1)
    fig, axes = plt.subplots(
        rows,
        cols,
        figsize=(max(1.25 * cols, 3.2), 1.55 * rows + 0.6),
        squeeze=False,
        layout="constrained",
    )
    for ax in axes.flat:
        ax.axis("off")
    if n == 0:
        axes[0, 0].text(0.5, 0.5, "none", ha="center", va="center", fontsize=12)
    for ax, index in zip(axes.flat, indices, strict=False):  # more axes than images
        actual, guess = int(split.labels[index]), int(predicted[index])
        image = split.images[index].reshape(IMAGE_SIDE, IMAGE_SIDE)
        ax.imshow(image, cmap="gray_r")
        ax.set_title(
            f"#{index}\n{split.classes[actual]} → {split.classes[guess]}",
            fontsize=7,
            color="black" if actual == guess else "tab:red",
        )
    fig.suptitle(f"{title}\n{subtitle}" if subtitle else title, fontsize=9)
    return fig


def prediction_grid(
    split: Split, predicted: np.ndarray, n_images: int, subtitle: str = ""
) -> Figure:
    """The first ``n_images`` test images, titled ``true → pred``; wrong ones in red."""
    indices = np.arange(min(n_images, len(split)))
    return image_grid(split, predicted, indices, "First test images (true → predicted)", subtitle)


def misclassified_indices(split: Split, predicted: np.ndarray, n_images: int) -> np.ndarray:
    """Indices (ascending) of the first ``n_images`` test images the model got wrong."""
    wrong = np.flatnonzero(split.labels != np.asarray(predicted))
    return wrong[:n_images]


def misclassified_grid(
    split: Split, predicted: np.ndarray, n_images: int, subtitle: str = ""
) -> Figure:
    """The first ``n_images`` misclassified test images by index, titled ``true → pred``."""
    indices = misclassified_indices(split, predicted, n_images)
    n_wrong = int((split.labels != np.asarray(predicted)).sum())
    title = f"Misclassified test images: first {len(indices)} of {n_wrong} (true → predicted)"
    return image_grid(split, predicted, indices, title, subtitle)


def build_figures(
    history: pd.DataFrame,
    confusion: pd.DataFrame,
    split: Split,
    predicted: np.ndarray,
    n_images: int,
    per_class: pd.DataFrame,
    subtitle: str = "",
) -> dict[str, Figure]:
    """Every figure of the report, keyed like ``FIGURES``; ``subtitle`` is the provenance."""
    return {
        "learning_curve": learning_curve(history, subtitle),
        "confusion": confusion_heatmap(confusion, subtitle=subtitle),
        "per_class": per_class_bars(per_class, subtitle),
        "predictions": prediction_grid(split, predicted, n_images, subtitle),
        "misclassified": misclassified_grid(split, predicted, n_images, subtitle),
    }


def markdown_table(frame: pd.DataFrame, index: bool = True) -> str:
    """A GitHub-markdown table (pandas + tabulate); cells shown as pandas gives them, every
    cell and heading escaped (they hold class names, params and paths)."""
    frame = frame.reset_index() if index else frame
    safe = frame.map(escape_md).rename(columns=escape_md)
    return safe.to_markdown(index=False, disable_numparse=True)


def _flatten(prefix: str, value: Any) -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        return [item for k, v in value.items() for item in _flatten(f"{prefix}.{k}", v)]
    return [(prefix, value)]


def _rounded(value: Any) -> Any:
    """Scores and losses with 4 decimals in the report's tables; ints and names as they are."""
    return f"{value:.4f}" if isinstance(value, float) else value


def as_written(value: Any) -> str:
    """A params value the way params.yaml spells it: ``[128]``, ``null``, ``true``, ``0.01``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(as_written(v) for v in value) + "]"
    return str(value)


def render_markdown(
    manifest: dict[str, Any],
    params: dict[str, Any],
    metrics: Metrics,
    history: pd.DataFrame,
    confusion: pd.DataFrame,
    per_class: pd.DataFrame,
    figures_dir: str,
) -> str:
    """The report: provenance, params (``params`` = params.yaml's sections as written),
    headline ``metrics`` (loss named by ``train.loss``), per-epoch log, confusion, classes."""
    counts = manifest["counts"]
    title = "# " + escape_md(
        provenance(manifest["dataset"], manifest["source"], counts["train"], counts["test"])
    )
    n_test = int(per_class["support"].sum())
    loss_name = params.get("train", {}).get("loss")
    labels = Metrics.labels()
    if loss_name:
        labels["loss"] += f" ({loss_name})"
    values = metrics.as_json()
    # Accuracy in bold with the test-set size, then every other metric in Metrics' order.
    headline = [f"- **{labels['accuracy']}: {values.pop('accuracy'):.4f}** on {n_test:,} images"]
    headline += [f"- {labels[name]}: {value:.4f}" for name, value in values.items()]
    scores = per_class.set_index("class").rename_axis("class")
    scores[list(SCORES)] = scores[list(SCORES)].map(_rounded)
    lines = [title, ""]
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
        markdown_table(
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
        "## Parameters (as in params.yaml)",
        "",
        markdown_table(
            pd.DataFrame(
                [
                    {"param": key, "value": as_written(value)}
                    for name, section in params.items()
                    for key, value in _flatten(name, section)
                ]
            ),
            index=False,
        ),
        "",
        "## Headline metrics",
        "",
        *headline,
        "",
        "## Training, per epoch",
        "",
        f"![learning curve]({figures_dir}/{FIGURES['learning_curve']})",
        "",
        markdown_table(history.map(_rounded), index=False),
        "",
        "## Confusion matrix (rows = actual, columns = predicted)",
        "",
        f"![confusion matrix]({figures_dir}/{FIGURES['confusion']})",
        "",
        markdown_table(confusion),
        "",
        "## Per-class scores",
        "",
        f"![per-class scores]({figures_dir}/{FIGURES['per_class']})",
        "",
        markdown_table(scores),
        "",
        "## First test images (true → predicted; red = wrong)",
        "",
        f"![test predictions]({figures_dir}/{FIGURES['predictions']})",
        "",
        "## Misclassified test images (the first ones by index; true → predicted)",
        "",
        f"![misclassified test images]({figures_dir}/{FIGURES['misclassified']})",
        "",
    ]
    return "\n".join(lines)
