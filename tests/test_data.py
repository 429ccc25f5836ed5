"""data: the notebook's flatten-and-scale, its implicit assumptions made explicit, batching."""

from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import synthetic_arrays
from mnist_pipeline.core.errors import PipelineError
from mnist_pipeline.data.idx import read_idx
from mnist_pipeline.data.sources import DATASETS, IDX_FILES
from mnist_pipeline.data.splits import load_split, read_raw_split, save_split, to_split
from mnist_pipeline.data.tensors import load_tensors, save_tensors
from mnist_pipeline.learning.training import epoch_order

CLASSES = DATASETS["mnist"].classes


def _split(images: np.ndarray, labels: np.ndarray):
    return to_split(images, labels, where="x", dataset="mnist", classes=CLASSES)


def test_flattens_to_784_and_scales_like_the_notebook() -> None:
    images, labels = synthetic_arrays(20, 0)
    split = _split(images, labels)
    assert split.images.shape == (20, 784) and split.images.dtype == np.float32
    assert split.labels.dtype == np.int64 and len(split) == 20
    # the notebook, per sample: torch.from_numpy(np.array(img)).view(28*28).float() / 255.
    expected = torch.from_numpy(images[7]).view(28 * 28).float() / 255.0
    assert torch.equal(torch.from_numpy(split.images[7]), expected)
    assert float(split.images.min()) >= 0.0 and float(split.images.max()) <= 1.0
    assert split.num_classes == 10


@pytest.mark.parametrize(
    ("images", "labels", "message"),
    [
        (np.zeros((3, 28, 27), np.uint8), np.zeros(3, np.uint8), "expected \\[N, 28, 28\\]"),
        (np.zeros((3, 784), np.uint8), np.zeros(3, np.uint8), "expected \\[N, 28, 28\\]"),
        (np.zeros((3, 28, 28), np.uint8), np.zeros(2, np.uint8), "3 images but 2 labels"),
        (np.zeros((0, 28, 28), np.uint8), np.zeros(0, np.uint8), "the split is empty"),
        (np.zeros((3, 28, 28), np.uint8), np.array([1, 10, 2], np.uint8), "label 10 at index 1"),
        (np.zeros((3, 28, 28), np.float32), np.zeros(3, np.uint8), "unsigned-byte"),
        (np.zeros((3, 28, 28), np.uint8), np.zeros((3, 1), np.uint8), "labels have shape"),
    ],
)
def test_invalid_raw_arrays(images: np.ndarray, labels: np.ndarray, message: str) -> None:
    with pytest.raises(PipelineError, match=message):
        _split(images, labels)


def test_read_raw_split_and_round_trip(raw_dir: Path, tmp_path: Path) -> None:
    from mnist_pipeline.core.io import read_json

    manifest = read_json(raw_dir / "manifest.json")
    split = read_raw_split(raw_dir, *IDX_FILES["train"], manifest)
    save_split(split, tmp_path / "train.safetensors", {"dataset": "mnist", "source": "mirror"})
    loaded = load_split(tmp_path / "train.safetensors")
    assert np.array_equal(loaded.images, split.images)
    assert np.array_equal(loaded.labels, split.labels)
    assert loaded.classes == CLASSES
    metadata = load_tensors(tmp_path / "train.safetensors")[1]
    assert (metadata["dataset"], metadata["source"]) == ("mnist", "mirror")


def test_load_split_rejects_wrong_shapes(tmp_path: Path) -> None:
    meta = {"dataset": "mnist", "source": "s", "classes": '["0","1"]'}
    path = tmp_path / "bad.safetensors"
    save_tensors(
        {"images": torch.zeros(4, 28, 28), "labels": torch.zeros(4, dtype=torch.int64)}, path, meta
    )
    with pytest.raises(PipelineError, match=r"expected float32 \[N, 784\]"):
        load_split(path)
    save_tensors(
        {"images": torch.zeros(4, 784), "labels": torch.zeros(3, dtype=torch.int64)}, path, meta
    )
    with pytest.raises(PipelineError, match=r"expected int64 \[4\]"):
        load_split(path)
    save_tensors({"images": torch.zeros(4, 784)}, path, meta)
    with pytest.raises(PipelineError, match="rerun the preprocess stage"):
        load_split(path)


def test_epoch_order_is_a_fresh_seeded_permutation_each_epoch() -> None:
    gen = torch.Generator().manual_seed(0)
    first = epoch_order(10, gen)
    second = epoch_order(10, gen)
    assert [len(b) for b in first.split(4)] == [4, 4, 2]
    assert sorted(first.tolist()) == list(range(10))
    assert not torch.equal(first, second)
    assert torch.equal(epoch_order(10, torch.Generator().manual_seed(0)), first)


def test_an_idx_path_that_is_a_folder_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match=rf"^{tmp_path}: cannot read it \(Is a directory\)$"):
        read_idx(tmp_path)
