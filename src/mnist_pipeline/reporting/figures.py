"""The charts the report (one run) and ``compare`` (two runs) draw alike, as matplotlib
``Figure`` objects (no pyplot state)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

# Above this many classes cells get no numbers and figures stop growing: 200 classes would
# otherwise be 40,000 text objects and gigabytes of memory.
MAX_LABELLED_CLASSES = 30
MAX_INCHES = 24.0
# One line style per run: an earlier run dashed grey, the last solid blue.
RUN_STYLES = (
    {"color": "tab:gray", "linestyle": "--", "marker": "s"},
    {"color": "tab:blue", "linestyle": "-", "marker": "o"},
)
CURVES = (  # (log column, axes 0 = loss / 1 = accuracy, legend name)
    ("train_loss", 0, "train"),
    ("val_loss", 0, "validation"),
    ("train_accuracy", 1, "train"),
    ("val_accuracy", 1, "validation"),
    ("test_accuracy", 1, "test"),
)


def learning_curves(runs: Sequence[tuple[str, pd.DataFrame]]) -> Figure:
    """Loss and accuracy per epoch of ``(legend label, train log)`` runs, side by side:
    validation dotted and the shipped epoch marked when the log has them."""
    fig = Figure(figsize=(10, 3.8), layout="constrained")
    axes = fig.subplots(1, 2)
    lines = 0
    for (label, history), style in zip(runs, RUN_STYLES[-len(runs) :], strict=True):
        prefix = f"{label} " if label else ""
        for column, which, name in CURVES:
            if column in history:
                dashed = {"linestyle": ":"} if name == "validation" else {}
                axes[which].plot(
                    history["epoch"], history[column], label=prefix + name, **(style | dashed)
                )
                lines += which
        if "shipped" in history and history["shipped"].eq(1).any():
            epoch = int(history.loc[history["shipped"].eq(1), "epoch"].iloc[0])
            for ax in axes:
                ax.axvline(epoch, color=style["color"], linestyle="--", linewidth=0.8, alpha=0.7)
            axes[1].annotate(
                f"{prefix}shipped: epoch {epoch}",
                (epoch, 0.02),
                xycoords=("data", "axes fraction"),
                fontsize=7,
                rotation=90,
                ha="right",
            )
    validated = any("val_loss" in history for _, history in runs)
    axes[0].set(xlabel="epoch", ylabel="mean loss", title="Loss (train vs validation)"
                if validated else "Train loss")  # fmt: skip
    axes[1].set(xlabel="epoch", ylabel="accuracy", title="Accuracy (train vs validation)"
                if validated else "Test accuracy")  # fmt: skip
    epochs = sorted({int(e) for _, history in runs for e in history["epoch"]})
    for ax in axes:
        ax.grid(alpha=0.3)
        if lines > 1:
            ax.legend(fontsize=8)
        if len(epochs) <= 12:  # every epoch a tick, a 1-epoch run included
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
    """``(panel title, [C, C] frame)`` panels side by side on one colour scale (bar named
    ``label``), each cell's value written; rows = actual, columns = predicted.

    ``signed`` (differences, ``norm`` centred at 0): red–blue, ``+3``/``-3``, zeros grey. Text
    is white on dark cells: counts above half the scale, differences beyond 60 % of it.
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
            # Out of the layout: constrained layout would measure every cell's text.
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
    """A group of bars per row of ``frame`` (index = class), a bar per column; class names
    turned when they would collide, the legend outside the axes (bars reach 1.0)."""
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
