"""Robustness and calibration: seeded random geometry (``data.geometry.perturb``) as a
training choice (``train.augment``), and a temperature fitted on the val slice that the
model files carry (``learning.losses``, ``evaluation.scores``)."""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from scipy import ndimage

from conftest import synthetic_arrays
from mnist_pipeline.core.errors import PipelineError
from mnist_pipeline.data.geometry import _stroke, _warp, perturb
from mnist_pipeline.data.splits import Split
from mnist_pipeline.data.tensors import read_tensor_metadata
from mnist_pipeline.evaluation.scores import expected_calibration_error, reliability
from mnist_pipeline.learning.checkpoints import Checkpoint
from mnist_pipeline.learning.losses import UNSURE_BELOW, Head, fit_temperature
from mnist_pipeline.learning.model_file import check_onnx, load_model, save_model, to_onnx
from mnist_pipeline.learning.params import Augment, TrainParams
from mnist_pipeline.learning.training import EpochRecord, train
from mnist_pipeline.serving.model import load_classifier
from mnist_pipeline.tools.params import problems

SETTINGS = dict(rotate=15.0, shift=2.0, scale=0.1, shear=10.0, stroke=1.0)
# perturb of the images with default_rng(0) and SETTINGS: the same on every x86-64 CPU
# (renew it only if a numpy upgrade changes the Generator's stream).
PERTURBED_SHA256 = "21f9c73b4c5fc30c61d6f27ebe50ff8ebbb3221e6871f2982c881f12c422c5a1"


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return (synthetic_arrays(64, 3)[0].reshape(64, -1) / np.float32(255)).astype(np.float32)


def test_perturb_is_seeded_and_zero_settings_change_nothing(images: np.ndarray) -> None:
    def run(seed: object, **settings: float) -> np.ndarray:
        return perturb(images, np.random.default_rng(seed), **settings)

    once = run(0, **SETTINGS)
    assert once.dtype == np.float32 and once.shape == images.shape
    assert once.min() >= 0.0 and once.max() <= 1.0
    assert once.tobytes() == run(0, **SETTINGS).tobytes()
    assert hashlib.sha256(once.tobytes()).hexdigest() == PERTURBED_SHA256
    assert once.tobytes() != run([0, 2], **SETTINGS).tobytes()  # another epoch, other draws
    assert not np.array_equal(once, images)
    assert run(0).tobytes() == images.tobytes()


def test_warp_is_scipys_bilinear_affine_and_stroke_its_grey_morphology(
    images: np.ndarray,
) -> None:
    rng = np.random.default_rng(1)
    square = images.reshape(-1, 28, 28).astype(np.float64)
    matrix, offset = rng.uniform(-1.2, 1.2, (64, 2, 2)), rng.uniform(-4, 4, (64, 2))
    want = [
        ndimage.affine_transform(image, m, offset=o, order=1, mode="grid-constant")
        for image, m, o in zip(square, matrix, offset, strict=True)
    ]
    np.testing.assert_allclose(_warp(square, matrix, offset), want, atol=1e-12)
    for steps, morphology in ((2, ndimage.grey_dilation), (-2, ndimage.grey_erosion)):
        got = _stroke(square, np.full(64, steps))
        assert np.array_equal(got, morphology(square, size=(1, 3, 3), mode="constant"))


def test_augment_is_a_nested_section_with_bounds() -> None:
    assert TrainParams().augment == Augment() and not any(Augment().model_dump().values())
    raw = {"train": {"augment": {"rotate": 90.0}}, "data": {}, "report": {}}
    assert problems(raw) == ["train.augment.rotate: 90.0 is out of range (must be <= 45.0)"]
    raw["train"]["augment"] = {"rotat": 9.0}
    assert problems(raw)[0].startswith("train.augment.rotat: unknown key; did you mean")


class Killed(Exception):
    """Stands in for a kill after epoch 2's checkpoint."""


@pytest.mark.parametrize(
    "setup",
    [
        dict(model="linear", gradients="manual"),
        dict(model="cnn", channels=[4, 8], hidden=[16], gradients="autograd", optimizer="adam"),
    ],
    ids=["manual-linear", "autograd-cnn"],
)
def test_augmented_training_resumes_with_the_same_bytes(
    setup: dict[str, object], train_split: Split, test_split: Split, tmp_path: Path
) -> None:
    base = dict(epochs=3, batch_size=20, lr=0.01, **setup)
    params = TrainParams(**base, augment=Augment(**SETTINGS))
    whole = train(params, train_split, test_split)
    plain = train(TrainParams(**base), train_split, test_split)
    assert whole.history != plain.history  # the batches were perturbed

    def die_after_2(record: EpochRecord) -> None:
        if record.epoch == 2:
            raise Killed

    checkpoint = Checkpoint(tmp_path / "train.pt", "key")
    with pytest.raises(Killed):
        train(params, train_split, test_split, die_after_2, checkpoint)
    resumed = train(params, train_split, test_split, None, checkpoint)
    assert resumed.first_epoch == 3 and resumed.history == whole.history
    for name, value in whole.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name


def test_temperature_fit_recovers_a_known_temperature() -> None:
    rng = np.random.default_rng(0)
    honest = rng.normal(0.0, 3.0, (20_000, 10))
    probs = np.exp(honest) / np.exp(honest).sum(1, keepdims=True)
    labels = np.array([rng.choice(10, p=p) for p in probs])
    assert fit_temperature(honest * 2.5, labels, "softmax") == pytest.approx(2.5, rel=0.03)
    assert fit_temperature(honest / 2, labels, "softmax") == pytest.approx(0.5, rel=0.03)


def test_ece_is_near_zero_when_confidence_is_honest_and_large_when_not() -> None:
    rng = np.random.default_rng(0)
    n = 100_000
    top = rng.uniform(0.1, 1.0, n)
    guess = rng.integers(0, 10, n)
    probs = np.tile(((1 - top) / 9)[:, None], (1, 10))
    probs[np.arange(n), guess] = top
    right = rng.uniform(size=n) < top
    labels = np.where(right, guess, (guess + rng.integers(1, 10, n)) % 10)
    assert expected_calibration_error(probs, labels) < 0.01
    table = reliability(probs, labels, bins=10)
    assert list(table.columns) == ["bin", "confidence", "accuracy", "count"]
    assert table["count"].sum() == n and list(table["bin"]) == list(range(1, 10))
    assert expected_calibration_error(probs, (guess + 1) % 10) > 0.5  # always wrong


def test_temperature_and_unsure_threshold_go_into_both_model_files(
    train_split: Split, test_split: Split, tmp_path: Path
) -> None:
    params = TrainParams(epochs=2, batch_size=20, val_fraction=0.2)
    result = train(params, train_split, test_split)
    temperature = result.temperature
    assert temperature != 1.0 and 0.05 <= temperature <= 20
    assert train(TrainParams(epochs=2, batch_size=20), train_split, test_split).temperature == 1.0
    save = functools.partial(save_model, result.model, result.spec)
    save(tmp_path / "m.safetensors", "mse", Head("softmax", 2.5, 0.0), ())
    assert load_model(tmp_path / "m.safetensors")[3] == Head("softmax", 2.5, 0.0)
    save(tmp_path / "plain.safetensors", "mse", Head(), ())
    assert load_model(tmp_path / "plain.safetensors")[3] == Head("softmax", 1.0, UNSURE_BELOW)
    assert "unsure_below" not in read_tensor_metadata(tmp_path / "plain.safetensors")
    bad = {(-1.0, 0.5): r"temperature '-1\.0' is no positive", (2.0, 1.0): r"'1\.0' is not in"}
    for calibration, message in bad.items():
        save(tmp_path / "bad.safetensors", "mse", Head("softmax", *calibration), ())
        with pytest.raises(PipelineError, match=message):
            load_model(tmp_path / "bad.safetensors")
    classes = tuple("0123456789")
    model = to_onnx(result.model, result.spec, Head("softmax", temperature, 0.25), classes, "mnist")
    meta = {p.key: p.value for p in onnx.load_from_string(model).metadata_props}
    assert float(meta["temperature"]) == temperature and json.loads(meta["classes"])
    assert meta["unsure_below"] == "0.25"
    (tmp_path / "m.onnx").write_bytes(model)
    assert load_classifier(tmp_path / "m.onnx").unsure_below == 0.25
    assert TrainParams().unsure_below == UNSURE_BELOW  # one default
    images = test_split.images
    check_onnx(model, result.model, Head("softmax", temperature), images, "m.onnx")
    with pytest.raises(PipelineError, match="disagrees with torch"):
        check_onnx(model, result.model, Head(), images, "m.onnx")  # uncalibrated
    session = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
    logits, probs = session.run(None, {"images": images})
    want = torch.from_numpy(logits / temperature).softmax(1).numpy()
    np.testing.assert_allclose(probs, want, atol=1e-6)
    plain = to_onnx(result.model, result.spec, Head(), classes, "mnist")
    assert not {"temperature", "unsure_below"} & {
        p.key for p in onnx.load_from_string(plain).metadata_props
    }
