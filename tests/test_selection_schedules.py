"""Validation slice, best epoch, early stopping and learning-rate schedules."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from mnist_pipeline.data.splits import Split
from mnist_pipeline.learning.optim import rates
from mnist_pipeline.learning.params import TrainParams
from mnist_pipeline.learning.training import holdout, train
from mnist_pipeline.tools.params import problems


def test_the_validation_slice_is_stratified_and_seeded(train_split: Split) -> None:
    rest, val = holdout(train_split, 0.2, seed=0)
    assert len(val) == 40 and len(rest) == 160
    whole = np.bincount(train_split.labels, minlength=10) / len(train_split)
    assert np.abs(np.bincount(val.labels, minlength=10) / len(val) - whole).max() <= 0.03
    again, other = holdout(train_split, 0.2, seed=0)[1], holdout(train_split, 0.2, seed=1)[1]
    assert np.array_equal(again.labels, val.labels) and np.array_equal(again.images, val.images)
    assert not np.array_equal(other.images, val.images)


def test_patience_stops_early_and_best_ships(train_split: Split, test_split: Split) -> None:
    """Shuffled labels: the validation loss soon rises (over-fitting), training stops."""
    noise = np.random.default_rng(0).permutation(train_split.labels)
    train_split = dataclasses.replace(train_split, labels=noise)
    setup = dict(
        model="mlp", hidden=(64,), activation="relu", loss="cross_entropy", val_fraction=0.2,
        lr=0.5, batch_size=10,
    )  # fmt: skip
    best = train(TrainParams(epochs=30, keep="best", patience=2, **setup), train_split, test_split)
    stopped = len(best.history)
    assert stopped < 30
    assert best.stop_reason == "stopped early: val_loss did not improve for 2 epochs " + (
        "(train.patience 2)"
    )
    losses = [r.val_loss for r in best.history]
    assert best.shipped == 1 + losses.index(min(losses)) == stopped - 2
    # The shipped weights are that epoch's: a run that ends there has the same.
    short = train(TrainParams(epochs=best.shipped, **setup), train_split, test_split)
    for a, b in zip(best.model.parameters(), short.model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_best_by_accuracy_keeps_the_first_best(train_split: Split, test_split: Split) -> None:
    params = TrainParams(epochs=6, val_fraction=0.2, lr=0.5, keep="best", monitor="val_accuracy")
    result = train(params, train_split, test_split)
    scores = [r.accuracy for r in result.history]
    assert result.shipped == 1 + scores.index(max(scores))


@pytest.mark.parametrize(
    ("train", "line"),
    [
        ({"keep": "best"}, "train.keep: best needs a validation slice to choose by"),
        ({"patience": 3}, "train.patience: 3 needs a validation slice to choose by"),
        ({"warmup": 10}, "train.warmup: 10 epochs leaves none of train.epochs=10"),
        ({"schedule": "cosin"}, "train.schedule: 'cosin' is not allowed (choose one of: "),
        ({"monitor": "test_accuracy"}, "train.monitor: 'test_accuracy' is not allowed"),
        ({"gamma": 0.0}, "train.gamma: 0.0 is out of range (must be > 0.0)"),
        ({"patience": -1}, "train.patience: -1 is out of range (must be >= 0)"),
    ],
)
def test_bad_selection_or_schedule_is_one_line(train: dict[str, object], line: str) -> None:
    found = problems({"data": {}, "train": train, "report": {}})
    assert len(found) == 1 and found[0].startswith(line), found


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({}, lambda e: 0.1),
        ({"warmup": 2}, lambda e: 0.1 * min(e, 3) / 3),
        ({"schedule": "step", "step_size": 2, "gamma": 0.5}, lambda e: 0.1 * 0.5 ** ((e - 1) // 2)),
        ({"schedule": "cosine"}, lambda e: 0.1 * (1 + math.cos(math.pi * (e - 1) / 6)) / 2),
        (
            {"schedule": "cosine", "warmup": 2},
            lambda e: 0.1 * e / 3 if e <= 2 else 0.1 * (1 + math.cos(math.pi * (e - 3) / 4)) / 2,
        ),
    ],
)
def test_schedule_follows_its_formula(settings: dict[str, object], expected: object) -> None:
    got = rates(TrainParams(epochs=6, lr=0.1, **settings))
    assert got == pytest.approx([expected(e) for e in range(1, 7)], rel=1e-12)  # type: ignore[operator]


def test_torch_optimizers_get_the_same_rates(train_split: Split, test_split: Split) -> None:
    """Adam steps with the schedule's rate of each epoch, as the log records it."""
    setup = dict(epochs=4, schedule="cosine", warmup=1, lr=0.01, model="mlp", hidden=(8,))
    adam = TrainParams(optimizer="adam", gradients="autograd", **setup)
    result = train(adam, train_split, test_split)
    assert [r.lr for r in result.history] == rates(adam)


@pytest.mark.parametrize("model", ["linear", "mlp"])
def test_hand_derived_engine_matches_autograd_under_a_schedule(
    model: str, train_split: Split, test_split: Split
) -> None:
    """Epoch by epoch: the same rate, the same loss; and the same weights at the end (the
    linear model runs the notebook's SGD step, the mlp ``ManualBackprop``'s gradients)."""
    setup = dict(model=model, hidden=(16,), lr=0.5, schedule="cosine", warmup=1, batch_size=20)
    manual = train(TrainParams(epochs=4, **setup), train_split, test_split)
    auto = train(TrainParams(epochs=4, gradients="autograd", **setup), train_split, test_split)
    assert (
        [r.lr for r in manual.history]
        == [r.lr for r in auto.history]
        == rates(TrainParams(epochs=4, **setup))
    )
    for m, a in zip(manual.history, auto.history, strict=True):
        assert m.train_loss == pytest.approx(a.train_loss, rel=1e-4)
    for a, b in zip(manual.model.parameters(), auto.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
