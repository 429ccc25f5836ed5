"""The report's figures (matplotlib ``Figure``s, no pyplot state) from what train and evaluate
wrote and the test images: no model, no torch."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from mnist_pipeline.data.splits import IMAGE_SIDE, Split

FIGURES = ("learning_curve", "test_predictions", "misclassified")  # reports/figures/<name>.png
FIRST_IMAGES = "First test images (true → predicted)"
SPLITS = {"train": "train", "val": "validation", "test": "test"}  # log column prefix -> name


def learning_curves(history: pd.DataFrame) -> Figure:
    """Loss and accuracy per epoch, a line per split the log holds, the shipped epoch marked."""
    fig = Figure(figsize=(10, 3.8), layout="constrained")
    shipped = history["epoch"][history["shipped"].eq(1)] if "shipped" in history else []
    for ax, metric in zip(fig.subplots(1, 2), ("loss", "accuracy"), strict=True):
        lines = {name: f"{s}_{metric}" for s, name in SPLITS.items() if f"{s}_{metric}" in history}
        for name, column in lines.items():
            style, color = ("-o", "tab:blue") if name == "train" else (":s", "tab:orange")
            ax.plot(history["epoch"], history[column], style, color=color, label=name)
        for epoch in shipped:
            ax.axvline(epoch, color="gray", linestyle="--", linewidth=0.8)
            ax.text(epoch, 0.02, f"shipped: epoch {epoch}", transform=ax.get_xaxis_transform(),
                    fontsize=7, rotation=90, ha="right")  # fmt: skip
        ax.set(xlabel="epoch", ylabel=metric, title=f"{metric.title()} ({' vs '.join(lines)})")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return fig


def image_grid(
    split: Split,
    predicted: np.ndarray,
    indices: np.ndarray,
    title: str,
    confidence: np.ndarray | None = None,
) -> Figure:
    """Test images ``indices``, 10 a row, titled ``#index true → pred`` (``confidence``), red if
    wrong, as tiles of one picture (an axes each is slow); "none" if there are none."""
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
        image = split.images[index].reshape(IMAGE_SIDE, IMAGE_SIDE)
        sheet[top : top + IMAGE_SIDE, left : left + IMAGE_SIDE] = image
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
    """The ``n_images`` most confident wrong predictions, most confident first (ties by index)."""
    wrong = np.flatnonzero(split.labels != np.asarray(predicted))
    shown = wrong[np.lexsort((wrong, -confidence[wrong]))][:n_images]
    title = f"Most confidently wrong test images: {len(shown)} of {len(wrong)}"
    title += " (true → predicted, confidence)"
    return image_grid(split, predicted, shown, title, confidence)


def build_figures(
    history: pd.DataFrame,
    split: Split,
    predicted: np.ndarray,
    confidence: np.ndarray,
    n_images: int,
    subtitle: str,
) -> dict[str, Figure]:
    """Every figure of the report, keyed like ``FIGURES``, ``subtitle`` under each title."""
    first = np.arange(min(n_images, len(split)))
    figures = {
        "learning_curve": learning_curves(history),
        "test_predictions": image_grid(split, predicted, first, FIRST_IMAGES),
        "misclassified": misclassified_grid(split, predicted, confidence, n_images),
    }
    for fig in figures.values():
        fig.suptitle("\n".join(filter(None, (fig.get_suptitle(), subtitle))), fontsize=10)
    return figures
