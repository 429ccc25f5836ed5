"""What is no digit: ``train.characters`` (letters and symbols drawn in fonts, trained as no
class; font digits as their digit), the losses' no-class rows, and the top-class Platt scaling
that calibrates a sigmoid output (``learning.losses``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mnist_pipeline.core.errors import PipelineError
from mnist_pipeline.data.characters import load_characters
from mnist_pipeline.data.splits import Split
from mnist_pipeline.evaluation.scores import expected_calibration_error
from mnist_pipeline.learning.losses import LOSSES, NO_CLASS, Head, calibrate, one_hot
from mnist_pipeline.learning.model_file import check_onnx, load_model, save_model, to_onnx
from mnist_pipeline.learning.params import TrainParams
from mnist_pipeline.learning.training import train

REPO = Path(__file__).resolve().parents[1]
PARAMS = dict(gradients="autograd", epochs=2, batch_size=20, val_fraction=0.2, output="sigmoid")


@pytest.fixture(scope="module")
def characters() -> Split:
    return load_characters()


def test_the_vendored_characters_hold_both_kinds_and_none_of_the_check_fonts(
    characters: Split,
) -> None:
    assert characters.images.shape[1] == 784 and characters.images.dtype == np.float32
    assert set(np.unique(characters.labels)) == {NO_CLASS, *range(10)}
    assert characters.images.min() >= 0.0 and characters.images.max() == 1.0
    fonts = (REPO / "vendor" / "characters" / "fonts.txt").read_text().lower()
    assert "dejavu" not in fonts.replace("none is dejavu", "")  # benchmarks' letters: DejaVu


def test_a_no_class_row_aims_at_no_class() -> None:
    labels = torch.tensor([2, NO_CLASS])
    assert one_hot(labels, 3).tolist() == [[0, 0, 1], [0, 0, 0]]
    logits = torch.tensor([[1.0, 2.0, 0.5], [3.0, -1.0, 0.0]])
    uniform = -F.log_softmax(logits[1:], 1).mean()
    expected = (F.cross_entropy(logits[:1], labels[:1]) + uniform) / 2
    assert LOSSES["softmax"]["cross_entropy"](logits, labels) == pytest.approx(float(expected))
    zeros = F.binary_cross_entropy_with_logits(logits[1], torch.zeros(3), reduction="sum")
    target = one_hot(labels[:1], 3)[0]
    first = F.binary_cross_entropy_with_logits(logits[0], target, reduction="sum")
    sigmoid = LOSSES["sigmoid"]["cross_entropy"](logits, labels)
    assert sigmoid == pytest.approx(float((zeros + first) / 2))
    assert LOSSES["softmax"]["cross_entropy"](logits[:1], labels[:1]) == F.cross_entropy(
        logits[:1], labels[:1]
    )  # without a no-class row: torch's own


def test_platt_scaling_calibrates_an_underconfident_sigmoid() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 4000)
    logits = rng.normal(-4.0, 1.0, (4000, 10))
    top = rng.normal(0.0, 1.5, 4000)  # the true class's logit; right as often as its sigmoid
    right = rng.random(4000) < 1 / (1 + np.exp(-(2 * top + 3)))
    logits[np.arange(4000), np.where(right, labels, (labels + 1) % 10)] = top + 3.0
    temperature, shift = calibrate(logits, labels, "sigmoid")
    assert temperature == pytest.approx(0.5, rel=0.1) and shift == pytest.approx(-3.0, abs=0.4)
    raw, head = torch.from_numpy(logits), Head("sigmoid", temperature, 0.0, shift)
    before = expected_calibration_error(Head("sigmoid").probabilities(raw).numpy(), labels)
    after = expected_calibration_error(head.probabilities(raw).numpy(), labels)
    assert after < 0.02 < before
    assert calibrate(logits, labels, "softmax")[1] == 0.0  # softmax: a temperature alone


def test_training_on_characters_is_seeded_and_ships_a_calibrated_head(
    characters: Split, train_split: Split, test_split: Split, tmp_path: Path
) -> None:
    params = TrainParams(**PARAMS, characters={"none": 0.5, "digits": 0.25})
    first, again = (train(params, train_split, test_split, characters=characters) for _ in "ab")
    pairs = zip(first.model.state_dict().values(), again.model.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)
    plain = train(TrainParams(**PARAMS), train_split, test_split)
    weights = zip(first.model.state_dict().values(), plain.model.state_dict().values(), strict=True)
    assert not all(torch.equal(a, b) for a, b in weights)  # the characters took part
    assert (first.temperature, first.shift) != (1.0, 0.0)
    head = Head("sigmoid", first.temperature, 0.9, first.shift)
    path = tmp_path / "m.safetensors"
    save_model(first.model, first.spec, path, "cross_entropy", head, train_split.classes)
    assert load_model(path)[3] == head
    onnx = to_onnx(first.model, first.spec, head, train_split.classes, "mnist")
    check_onnx(onnx, first.model, head, test_split.images, "m.onnx")  # the shift is in the graph
    with pytest.raises(PipelineError, match="differ"):
        check_onnx(onnx, first.model, dataclasses.replace(head, shift=0.0), test_split.images, "m")


def test_characters_are_refused_where_they_cannot_train(
    characters: Split, train_split: Split, test_split: Split, tmp_path: Path
) -> None:
    with pytest.raises(PipelineError, match=r"train\.characters: trains through autograd only"):
        TrainParams(characters={"none": 0.5})
    params = TrainParams(**PARAMS, characters={"digits": 0.5})
    garments = dataclasses.replace(train_split, classes=tuple(f"g{k}" for k in range(10)))
    with pytest.raises(PipelineError, match="this dataset's classes are g0, g1"):
        train(params, garments, test_split, characters=characters)
    defaulted = train(params, train_split, test_split)  # the package's own characters
    given = train(params, train_split, test_split, characters=characters)
    weights = [result.model.state_dict().values() for result in (defaulted, given)]
    pairs = zip(*weights, strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)
    broken = tmp_path / "characters.npz"
    broken.write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(PipelineError, match=r"characters.npz: cannot read the characters"):
        load_characters(broken)
    np.savez(broken, images=np.zeros((2, 28, 28), np.uint8), labels=np.array([0, 12], np.int8))
    with pytest.raises(PipelineError, match=r"labels -1\.\.9"):
        load_characters(broken)
