"""The charts that the report (one run) and ``compare`` (two runs) draw alike.

Figures are ``matplotlib.figure.Figure`` objects (no pyplot state); ``io.save_figure``
renders them with the Agg canvas.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

# Above this many classes (an EMNIST-size idx set) cells get no numbers and figures stop
# growing: 200 classes would otherwise be 40,000 text objects and gigabytes of memory.
MAX_LABELLED_CLASSES = 30
MAX_INCHES = 24.0
# One line style per run in learning_curves: an earlier run dashed grey, the last solid blue.
RUN_STYLES = (
    {"color": "tab:gray", "linestyle": "--", "marker": "s"},
    {"color": "tab:blue", "linestyle": "-", "marker": "o"},
)


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
