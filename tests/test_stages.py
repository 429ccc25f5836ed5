"""Stage scripts as a user runs them (``main(argv)`` through ``run_stage``, in this process):
bad params or inputs give one line, exit 2, no output."""

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from conftest import REPO, Outcome, error_line, stage_here
from mnist_pipeline.core.io import read_json

DEFAULT_PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())


def write_params(path: Path, section: str, key: str, value: object) -> Path:
    raw = yaml.safe_load(yaml.safe_dump(DEFAULT_PARAMS))
    raw[section][key] = value
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("lrr", 0.1, "train.lrr: unknown key; did you mean 'train.lr'?"),
        ("lr", "high", "train.lr: expected a number, got 'high'"),
        ("lr", -1, "train.lr: -1.0 is out of range (must be > 0.0)"),
    ],
)
def test_bad_params_stop_download_before_any_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], key: str, value: object, expected: str
) -> None:
    params = write_params(tmp_path / "params.yaml", "train", key, value)
    result = stage_here(capsys, "download", "--params", str(params), "--out", "out", cwd=tmp_path)
    line = error_line(result)
    assert expected in line and str(params) in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


def test_bad_params_stop_train_before_touching_outputs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    params = write_params(tmp_path / "params.yaml", "train", "epochs", 0)
    model = tmp_path / "model.safetensors"
    model.write_bytes(b"previous")
    result = stage_here(
        capsys, "train", "--params", str(params), "--data", "nowhere", "--model", str(model),
        "--history", "log.csv", cwd=tmp_path,
    )  # fmt: skip
    assert "train.epochs: 0 is out of range" in error_line(result)
    assert model.read_bytes() == b"previous" and not (tmp_path / "log.csv").exists()


def preprocess(raw_dir: Path, cwd: Path, capsys: pytest.CaptureFixture[str]) -> Outcome:
    return stage_here(
        capsys, "preprocess", "--params", str(REPO / "params.yaml"), "--raw", str(raw_dir),
        "--out", "processed", cwd=cwd,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (lambda raw: (raw / "t10k-images-idx3-ubyte").unlink(),
         "t10k-images-idx3-ubyte: file not found"),
        (lambda raw: (raw / "train-images-idx3-ubyte").write_bytes(
            (raw / "train-images-idx3-ubyte").read_bytes()[:-10]), "IDX data truncated"),
    ],
    ids=["missing", "truncated"],
)  # fmt: skip
def test_bad_raw_file_fails_preprocess_cleanly(
    raw_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    damage: Callable[[Path], object],
    expected: str,
) -> None:
    damage(raw_dir)
    assert expected in error_line(preprocess(raw_dir, tmp_path, capsys))
    assert not (tmp_path / "processed").exists()


def test_preprocess_writes_both_splits(
    raw_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = preprocess(raw_dir, tmp_path, capsys)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "processed").iterdir()) == [
        "manifest.json",  # the download's, so later stages need no data/raw dep
        "test.safetensors",
        "train.safetensors",
    ]
    copied = read_json(tmp_path / "processed" / "manifest.json")
    assert copied == read_json(raw_dir / "manifest.json")
