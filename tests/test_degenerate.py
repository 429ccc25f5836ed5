"""Degenerate data is said out loud (one class refused), tampered report inputs refused."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, error_line, make_split, stage, write_idx_set, write_manifest
from mnist_pipeline.core.errors import PipelineError
from mnist_pipeline.data.idx import write_idx
from mnist_pipeline.data.splits import Split, degenerate_data


def _relabelled(split: Split, labels: np.ndarray) -> Split:
    return dataclasses.replace(split, labels=labels.astype(np.int64))


@pytest.fixture(scope="module")
def train() -> Split:
    return make_split(500, 1)


@pytest.fixture(scope="module")
def test() -> Split:
    return make_split(100, 2)


def test_ordinary_data_warns_nothing(train: Split, test: Split) -> None:
    assert degenerate_data(train, test) == []


def test_one_class_is_refused(train: Split, test: Split) -> None:
    with pytest.raises(PipelineError, match="every one of its 500 images is class '3'"):
        degenerate_data(_relabelled(train, np.full(500, 3)), test)


def test_extreme_imbalance_warns(train: Split, test: Split) -> None:
    labels = np.zeros(500)
    labels[:9] = np.arange(1, 10)  # one image of each class but 0: 491:1
    (warning,) = degenerate_data(_relabelled(train, labels), test)
    assert "class '0' has 491 images, class '1' only 1 (over 50:1)" in warning


def test_test_classes_missing_from_train_warn(train: Split, test: Split) -> None:
    found = degenerate_data(_relabelled(train, np.arange(500) % 5), test)
    assert found == [
        "test split: classes '5', '6', '7', '8', '9' never occur in the train split: the model "
        "cannot learn them and scores 0 on them; check data.dataset, data.mirror and the "
        "label files"
    ]


def test_blank_images_warn(train: Split, test: Split) -> None:
    blank = dataclasses.replace(train, images=np.zeros_like(train.images))
    (warning,) = degenerate_data(blank, test)
    assert warning.startswith("train split: 500 of 500 images are blank")


def test_preprocess_logs_the_warning_and_refuses_one_class(tmp_path: Path) -> None:
    raw = write_idx_set(tmp_path / "raw", n_train=200, n_test=50)
    write_manifest(raw)
    labels = np.zeros(200, dtype=np.uint8)
    labels[:2] = 1
    write_idx(labels, raw / "train-labels-idx1-ubyte")
    args = ["--params", str(REPO / "params.yaml"), "--raw", str(raw), "--out", "out"]
    result = stage("preprocess", *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "WARNING preprocess: train split: class '0' has 198 images" in result.stderr
    write_idx(np.zeros(200, dtype=np.uint8), raw / "train-labels-idx1-ubyte")
    assert "every one of its 200 images is class '0'" in error_line(
        stage("preprocess", *args, cwd=tmp_path)
    )


@pytest.mark.parametrize(
    ("metrics", "says"),
    [
        (
            {"accuracy": 7.5, "cross_entropy": 0.3, "macro_f1": 0.5},
            "metric 'accuracy' is 7.5 (allowed",
        ),
        (
            {"accuracy": 0.5, "cross_entropy": -1e308, "macro_f1": 0.5},
            "metric 'cross_entropy' is -1e+308",
        ),
    ],
)
def test_report_refuses_tampered_metrics(
    metrics: dict[str, float], says: str, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    write_manifest(data)
    (tmp_path / "eval.json").write_text(json.dumps(metrics))
    args = ["--params", str(REPO / "params.yaml"), "--data", "data", "--metrics", "eval.json"]
    args += ["--log", "log.csv", "--predictions", "p.csv"]
    args += ["--out", "reports"]
    assert says in error_line(stage("report", *args, cwd=tmp_path))
    assert not (tmp_path / "reports").exists()
