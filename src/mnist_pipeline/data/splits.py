"""Raw IDX arrays -> checked splits, ``[N, 28, 28] uint8 -> [N, 784] float32 / 255``, with
what the notebook's ``data_iter`` silently assumed made explicit; numpy only, no torch."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from mnist_pipeline.core.errors import PipelineError
from mnist_pipeline.data.idx import read_idx
from mnist_pipeline.data.tensors import load_tensors, save_tensors

IMAGE_SIDE = 28  # every dataset's images are IMAGE_SIDE × IMAGE_SIDE pixels
N_FEATURES = IMAGE_SIDE * IMAGE_SIDE


@dataclasses.dataclass(frozen=True)
class Split:
    """One processed split: images ``[N, 784]`` float32 in [0, 1], labels ``[N]`` int64."""

    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, index: np.ndarray) -> Split:
        return dataclasses.replace(self, images=self.images[index], labels=self.labels[index])


def check_labels(labels: np.ndarray, num_classes: int, where: str, dataset: str) -> None:
    """Every label an integer class number ``0..num_classes-1`` (NaN and floats fail)."""
    bad = ~np.isin(labels, np.arange(num_classes))
    if bad.any():
        index = int(np.flatnonzero(bad)[0])
        raise PipelineError(
            f"{where}: label {labels[index]} at index {index} is out of range "
            f"0..{num_classes - 1} for {dataset}; the labels file is corrupt or of another "
            "dataset: check data.dataset and fetch it again"
        )


def to_split(
    images: np.ndarray, labels: np.ndarray, *, where: str, dataset: str, classes: tuple[str, ...]
) -> Split:
    """Raw IDX arrays, checked, as a ``Split``; ``where`` names them in errors."""
    if images.dtype != np.uint8 or labels.dtype != np.uint8:
        raise PipelineError(
            f"{where}: expected unsigned-byte IDX data, got images {images.dtype}, "
            f"labels {labels.dtype}"
        )
    if images.ndim != 3 or images.shape[1:] != (IMAGE_SIDE, IMAGE_SIDE):
        raise PipelineError(
            f"{where}: images have shape {list(images.shape)}, expected "
            f"[N, {IMAGE_SIDE}, {IMAGE_SIDE}]; the file is not a {IMAGE_SIDE}×{IMAGE_SIDE} "
            "image set: check data.dataset and data.mirror"
        )
    if labels.ndim != 1:
        raise PipelineError(f"{where}: labels have shape {list(labels.shape)}, expected [N]")
    if len(images) != len(labels):
        raise PipelineError(
            f"{where}: {images.shape[0]} images but {labels.shape[0]} labels; "
            "the image and label files do not belong together; fetch both again"
        )
    if len(images) == 0:
        raise PipelineError(f"{where}: the split is empty (0 images); fetch the data again")
    check_labels(labels, len(classes), where, dataset)
    flat = images.reshape(images.shape[0], N_FEATURES).astype(np.float32) / np.float32(255.0)
    return Split(flat, labels.astype(np.int64), classes)


def read_raw_split(
    raw_dir: Path, images_name: str, labels_name: str, manifest: dict[str, object]
) -> Split:
    """One split's two IDX files in the download stage's output directory."""
    images, labels = read_idx(raw_dir / images_name), read_idx(raw_dir / labels_name)
    where, dataset = f"{raw_dir}/{images_name} + {labels_name}", str(manifest["dataset"])
    classes = tuple(manifest["classes"])  # type: ignore[call-overload]
    return to_split(images, labels, where=where, dataset=dataset, classes=classes)


def check_trainable(train: Split) -> None:
    """Refuse a train split of one class: its accuracy of 1.0 would say nothing."""
    present = np.unique(train.labels)
    if len(present) < 2:
        raise PipelineError(
            f"train split: every one of its {len(train):,} images is class "
            f"{train.classes[present[0]]!r}; check data.dataset, data.mirror and the label files"
        )


def save_split(split: Split, path: Path, provenance: Mapping[str, str] | None = None) -> None:
    """The split as safetensors, its class names and ``provenance`` as metadata."""
    metadata = {**(provenance or {}), "classes": json.dumps(list(split.classes))}
    save_tensors({"images": split.images, "labels": split.labels}, path, metadata=metadata)


def load_split(path: Path) -> Split:
    """Load a processed split and re-check what training relies on."""
    tensors, meta = load_tensors(path)
    try:
        images, labels = tensors["images"], tensors["labels"]
        classes = tuple(json.loads(meta["classes"]))
    except (KeyError, json.JSONDecodeError) as err:
        raise PipelineError(
            f"{path}: missing {err} in the processed file; rerun the preprocess stage"
        ) from err
    if images.dtype != np.float32 or images.ndim != 2 or images.shape[1] != N_FEATURES:
        raise PipelineError(
            f"{path}: images are {images.dtype} {list(images.shape)}, expected float32 "
            f"[N, {N_FEATURES}]; rerun the preprocess stage"
        )
    if labels.dtype != np.int64 or labels.shape != (images.shape[0],):
        raise PipelineError(
            f"{path}: labels are {labels.dtype} {list(labels.shape)}, expected int64 "
            f"[{images.shape[0]}]; rerun the preprocess stage"
        )
    return Split(images, labels, classes)
