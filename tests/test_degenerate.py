"""Data that cannot train (one class) is refused, tampered report inputs refused."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import (
    REPO,
    error_line,
    make_split,
    stage_here,
    write_idx_set,
    write_manifest,
)
from mnist_pipeline.core.errors import PipelineError
from mnist_pipeline.data.idx import write_idx
from mnist_pipeline.data.splits import Split, check_trainable


def _relabelled(split: Split, labels: np.ndarray) -> Split:
    return dataclasses.replace(split, labels=labels.astype(np.int64))


@pytest.fixture(scope="module")
def train() -> Split:
    return make_split(500, 1)


def test_two_classes_are_enough(train: Split) -> None:
    check_trainable(_relabelled(train, np.arange(500) % 2))


def test_one_class_is_refused(train: Split) -> None:
    with pytest.raises(PipelineError, match="every one of its 500 images is class '3'"):
        check_trainable(_relabelled(train, np.full(500, 3)))


def test_preprocess_refuses_one_class_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = write_idx_set(tmp_path / "raw", n_train=200, n_test=50)
    write_manifest(raw)
    write_idx(np.zeros(200, dtype=np.uint8), raw / "train-labels-idx1-ubyte")
    args = ["--params", str(REPO / "params.yaml"), "--raw", str(raw), "--out", "out"]
    result = stage_here(capsys, "preprocess", *args, cwd=tmp_path)
    assert "every one of its 200 images is class '0'" in error_line(result)
    assert not (tmp_path / "out").exists()


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
    metrics: dict[str, float], says: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    write_manifest(data)
    (tmp_path / "eval.json").write_text(json.dumps(metrics))
    args = ["--params", str(REPO / "params.yaml"), "--data", "data", "--metrics", "eval.json"]
    args += ["--log", "log.csv", "--predictions", "p.csv"]
    args += ["--out", "reports"]
    assert says in error_line(stage_here(capsys, "report", *args, cwd=tmp_path))
    assert not (tmp_path / "reports").exists()
