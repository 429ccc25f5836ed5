"""The human-readable run report: markdown text and matplotlib figures.

``build_figures`` returns named figures (learning curve, confusion heatmap with counts,
per-class precision/recall/F1 bars, the first test images with true → predicted labels,
and the first misclassified ones); ``render_markdown`` returns the report text that links
them. Data provenance comes first — in the report's title and in every figure's title — so
nobody mistakes a result on the 5,000-digit embedded sample for a full-MNIST one. The
stage (``stages/report.py``, run by ``dvc repro``) saves both through ``io``.

``learning_curves``, ``heatmap`` and ``bar_chart`` draw one run here and two in ``compare``.
Figures are ``matplotlib.figure.Figure`` objects (no pyplot state); ``io.save_figure``
renders them with the Agg canvas.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from mnist_pipeline.core.params import IMAGE_SIDE
from mnist_pipeline.data.splits import Split
from mnist_pipeline.evaluation.scores import SCORES, Metrics
from mnist_pipeline.reporting.text import escape_md, plain

FIGURES = {
    "learning_curve": "learning_curve.png",
    "confusion": "confusion_matrix.png",
    "per_class": "per_class_scores.png",
    "predictions": "test_predictions.png",
    "misclassified": "misclassified.png",
}
# The report's section for each figure, in report.md's order.
SECTIONS = {
    "learning_curve": "Training, per epoch",
    "confusion": "Confusion matrix (rows = actual, columns = predicted)",
    "per_class": "Per-class scores",
    "predictions": "First test images (true → predicted; red = wrong)",
    "misclassified": "Misclassified test images (the first ones by index; true → predicted)",
}
# Above this many classes (an EMNIST-size idx set) cells get no numbers and figures stop
# growing: 200 classes would otherwise be 40,000 text objects and gigabytes of memory.
MAX_LABELLED_CLASSES = 30
MAX_INCHES = 24.0
# One line style per run in learning_curves: an earlier run dashed grey, the last solid blue.
RUN_STYLES = (
    {"color": "tab:gray", "linestyle": "--", "marker": "s"},
    {"color": "tab:blue", "linestyle": "-", "marker": "o"},
)


def provenance(manifest: Mapping[str, Any]) -> str:
    """``mnist — embedded data (4,000 train / 1,000 test images)``: titles say what was run
    (``manifest`` is ``manifest.json``'s object)."""
    counts = manifest["counts"]
    data = f"{plain(manifest['dataset'])} — {plain(manifest['source'])} data"
    return f"{data} ({counts['train']:,} train / {counts['test']:,} test images)"


def learning_curves(runs: Sequence[tuple[str, pd.DataFrame]]) -> Figure:
    """Train loss and test (or validation) accuracy per epoch, side by side, one line per
    run (``(legend label, train log)`` pairs; a legend only when there are several)."""
    fig = Figure(figsize=(10, 3.8), layout="constrained")
    ax_loss, ax_acc = fig.subplots(1, 2)
    for (label, history), style in zip(runs, RUN_STYLES[-len(runs) :], strict=True):
        # test_accuracy (the notebook's per-epoch test score) or val_accuracy
        column = next(c for c in history.columns if c.endswith("_accuracy"))
        scored_on = "" if column == "test_accuracy" else f" ({column})"
        ax_loss.plot(history["epoch"], history["train_loss"], label=label, **style)
        ax_acc.plot(history["epoch"], history[column], label=label + scored_on, **style)
    ax_loss.set(xlabel="epoch", ylabel="mean train loss", title="Train loss")
    scored_on = "Test" if column.startswith("test") else "Validation"
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title=f"{scored_on} accuracy")
    # Whole-number epoch ticks: every epoch when there are few (a 1-epoch run included).
    epochs = sorted({int(e) for _, history in runs for e in history["epoch"]})
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        if len(runs) > 1:
            ax.legend(fontsize=8)
        if len(epochs) <= 12:
            ax.set_xticks(epochs)
        else:
            ax.xaxis.get_major_locator().set_params(integer=True)
    return fig


def heatmap(
    panels: Sequence[tuple[str, pd.DataFrame]],
    norm: Normalize,
    title: str = "",
    label: str = "",
    signed: bool = False,
) -> Figure:
    """``[C, C]`` frames (``(panel title, frame)`` pairs) side by side on one colour scale, with the
    value written in each cell; rows = actual (``frame.index``), columns = predicted.

    ``signed`` (differences, ``norm`` centred at 0): red–blue, ``+3``/``-3``, zeros grey.
    Text turns white on dark cells: counts above half the scale's top, differences beyond
    60 % of its half-width. ``label`` names the colour bar, ``title`` heads the figure.
    """
    size = min(max(5.0, 0.55 * len(panels[0][1]) + 2), MAX_INCHES)
    fig = Figure(figsize=(len(panels) * size + 1, size), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    span = max(abs(norm.vmin or 0), abs(norm.vmax or 0), 1)
    for ax, (name, frame) in zip(axes, panels, strict=True):
        values = frame.to_numpy()
        image = ax.imshow(values, cmap="RdBu" if signed else "Blues", norm=norm)
        ax.set_xticks(range(len(frame.columns)), frame.columns.astype(str), rotation=45, ha="right")
        ax.set_yticks(range(len(frame.index)), frame.index.astype(str))
        ax.set(xlabel="predicted", ylabel="actual", title=name)
        if len(frame.columns) > MAX_LABELLED_CLASSES:
            continue
        for (row, col), value in np.ndenumerate(values):
            if signed:
                text, dark = (f"{value:+d}" if value else "0"), abs(value) > 0.6 * span
            else:
                text, dark = str(value), value > 0.5 * (norm.vmax or 0)
            color = "white" if dark else ("lightgray" if signed and not value else "black")
            # Inside the axes, so out of the layout: constrained layout measures no cell text.
            ax.text(col, row, text, ha="center", va="center", color=color, size=8, in_layout=False)
    fig.colorbar(image, ax=axes, shrink=0.8, label=label)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def bar_chart(
    frame: pd.DataFrame,
    title: str,
    ylabel: str,
    top: float = 1.02,
    colors: Sequence[str] | None = None,
) -> Figure:
    """Grouped bars (pandas): a group per row of ``frame`` (index = class), a bar per column.

    Full class names ("Ankle boot"), turned when they would collide; the legend outside
    the axes (bars reach 1.0 and would hide under it).
    """
    classes = frame.index.astype(str)
    width = min(max(7.0, 0.75 * len(frame) + 2), MAX_INCHES)
    fig = Figure(figsize=(width, 3.8), layout="constrained")
    ax = fig.subplots()
    frame.plot.bar(ax=ax, width=0.8, color=colors)
    turn = len(classes) > 10 or max(map(len, classes), default=0) > 5
    rotation, align = (45, "right") if turn else (0, "center")
    ax.set_xticks(range(len(classes)), classes, rotation=rotation, ha=align)
    ax.set(xlabel="class", ylabel=ylabel, ylim=(0, top), title=title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    ax.grid(axis="y", alpha=0.3)
    return fig


def image_grid(split: Split, predicted: np.ndarray, indices: np.ndarray, title: str) -> Figure:
    """Test images ``indices`` (``[n]`` into ``split``), titled ``#index true → pred``.

    Wrong predictions are red. At most 10 per row; an empty ``indices`` gives a figure that
    says so, so the report never links a missing file. The images are tiles of one picture
    on one axes (28 px, 4 px apart, 8 px above each for its title): an axes per image
    would take most of the report stage's drawing time.
    """
    cols = min(max(len(indices), 1), 10)
    rows = max(-(-len(indices) // cols), 1)
    tile_width, tile_height = IMAGE_SIDE + 4, IMAGE_SIDE + 8
    sheet = np.full((rows * tile_height, cols * tile_width), np.nan)  # NaN: blank paper
    fig = Figure(figsize=(max(1.25 * cols, 3.2), 1.45 * rows + 0.6), layout="constrained")
    ax = fig.subplots()
    ax.axis("off")
    for k, index in enumerate(indices):
        top, left = (k // cols + 1) * tile_height - IMAGE_SIDE, k % cols * tile_width
        image = split.images[index].reshape(IMAGE_SIDE, IMAGE_SIDE)
        sheet[top : top + IMAGE_SIDE, left : left + IMAGE_SIDE] = image
        actual, guess = int(split.labels[index]), int(predicted[index])
        caption = f"#{index}\n{split.classes[actual]} → {split.classes[guess]}"
        color = "black" if actual == guess else "tab:red"
        x, y = left + IMAGE_SIDE / 2 - 0.5, top - 1.5  # centred over the tile, just above it
        ax.text(x, y, caption, ha="center", va="bottom", fontsize=7, color=color)
    ax.imshow(sheet, cmap="gray_r", vmin=0, vmax=1)
    if not len(indices):
        ax.text(0.5, 0.5, "none", ha="center", va="center", fontsize=12, transform=ax.transAxes)
    fig.suptitle(title, fontsize=10)
    return fig


def misclassified_grid(split: Split, predicted: np.ndarray, n_images: int) -> Figure:
    """The first ``n_images`` misclassified test images by index, titled ``true → pred``."""
    wrong = np.flatnonzero(split.labels != np.asarray(predicted))
    shown = f"first {min(n_images, len(wrong))} of {len(wrong)}"
    title = f"Misclassified test images: {shown} (true → predicted)"
    return image_grid(split, predicted, wrong[:n_images], title)


def build_figures(
    history: pd.DataFrame,
    confusion: pd.DataFrame,
    split: Split,
    predicted: np.ndarray,
    n_images: int,
    per_class: pd.DataFrame,
    subtitle: str,
) -> dict[str, Figure]:
    """Every figure of the report, keyed like ``FIGURES``; ``subtitle`` (the provenance)
    goes under each figure's own title."""
    first = np.arange(min(n_images, len(split)))
    norm = Normalize(vmin=0, vmax=max(int(confusion.to_numpy().max(initial=0)), 1))
    scores = per_class.set_index("class")[list(SCORES)]
    figures = {
        "learning_curve": learning_curves([("", history)]),
        "confusion": heatmap([("Confusion matrix", confusion)], norm),
        "per_class": bar_chart(scores, "Per-class scores (test set)", "score"),
        "predictions": image_grid(split, predicted, first, "First test images (true → predicted)"),
        "misclassified": misclassified_grid(split, predicted, n_images),
    }
    for fig in figures.values():
        fig.suptitle("\n".join(filter(None, (fig.get_suptitle(), subtitle))), fontsize=10)
    return figures


def markdown_table(frame: pd.DataFrame, index: bool = True) -> str:
    """A GitHub-markdown table (pandas + tabulate): floats (scores, losses) with 4 decimals,
    every other cell and heading as text, escaped (they hold class names, params, paths)."""
    frame = frame.reset_index() if index else frame
    cells = frame.map(
        lambda value: f"{value:.4f}" if isinstance(value, float) else escape_md(value)
    )
    return cells.rename(columns=escape_md).to_markdown(index=False, disable_numparse=True)


def as_written(value: Any) -> str:
    """A params value the way params.yaml spells it: ``[128]``, ``null``, ``true``, ``0.01``."""
    return value if isinstance(value, str) else json.dumps(value)


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
    title = "# " + escape_md(provenance(manifest))
    n_test = int(per_class["support"].sum())
    loss_name = params.get("train", {}).get("loss")
    labels = Metrics.labels()
    if loss_name:
        labels["loss"] += f" ({loss_name})"
    values = metrics.as_json()
    # Accuracy in bold with the test-set size, then every other metric in Metrics' order.
    headline = [f"- **{labels['accuracy']}: {values.pop('accuracy'):.4f}** on {n_test:,} images"]
    headline += [f"- {labels[name]}: {value:.4f}" for name, value in values.items()]
    files = pd.DataFrame.from_dict(manifest["files"], orient="index").rename_axis("file")
    files = files[["shape", "sha256", "verified"]].assign(sha256=files["sha256"].str[:16] + "…")
    flat = pd.Series(pd.json_normalize(params, sep=".").to_dict("records")[0], dtype=object)
    written = flat.map(as_written).rename_axis("param").to_frame("value")
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
        markdown_table(files),
        "",
        "## Parameters (as in params.yaml)",
        "",
        markdown_table(written),
        "",
        "## Headline metrics",
        "",
        *headline,
        "",
    ]
    # Each figure's section: heading, the PNG, and its numbers as a table where there are some.
    tables = {
        "learning_curve": history.set_index("epoch"),
        "confusion": confusion,
        "per_class": per_class.set_index("class"),
    }
    for key, heading in SECTIONS.items():
        alt = FIGURES[key].removesuffix(".png").replace("_", " ")
        lines += [f"## {heading}", "", f"![{alt}]({figures_dir}/{FIGURES[key]})", ""]
        lines += [markdown_table(tables[key]), ""] if key in tables else []
    return "\n".join(lines)
