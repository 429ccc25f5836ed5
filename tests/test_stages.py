"""Stage scripts as a user runs them (``main(argv)`` through ``entry_point``, in this process):
bad params or inputs give one line, exit 2, no output."""

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from conftest import REPO, Outcome, error_line, stage, stage_here, write_manifest
from mnist_pipeline.core.io import read_json, write_csv, write_json
from mnist_pipeline.data.splits import Split, save_split
from mnist_pipeline.evaluation.evaluate import evaluate
from mnist_pipeline.learning.models import ModelSpec, build_model

DEFAULT_PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())


def write_params(path: Path, section: str, key: str, value: object) -> Path:
    raw = yaml.safe_load(yaml.safe_dump(DEFAULT_PARAMS))
    raw[section][key] = value
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("sourse", "embedded", "data.sourse: unknown key; did you mean 'data.source'?"),
        ("split_seed", "one", "data.split_seed: expected an integer, got 'one'"),
        ("verify", "no", "data.verify: expected true or false, got 'no'"),
    ],
)
def test_bad_params_stop_download_before_any_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], key: str, value: object, expected: str
) -> None:
    """download validates its own section, ``data``; a train typo is the train stage's."""
    params = write_params(tmp_path / "params.yaml", "data", key, value)
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


NO_TORCH = """
import runpy, sys
sys.modules["torch"] = None  # from here on `import torch` raises ImportError
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


# Subprocess: a fresh interpreter in which torch cannot be imported.
def test_report_stage_runs_without_torch(tmp_path: Path, test_split: Split) -> None:
    """The report draws everything from what train and evaluate wrote: with torch
    unimportable it still writes report.md and its figures."""
    data, metrics = tmp_path / "data", tmp_path / "metrics"
    data.mkdir()
    metrics.mkdir()
    write_manifest(data, n_test=len(test_split))
    save_split(test_split, data / "test.safetensors")
    spec = ModelSpec("linear", 784, 10)
    result = evaluate(build_model(spec), spec, test_split)
    write_json(result.metrics.as_json(), metrics / "eval.json")
    write_csv(result.predictions, metrics / "predictions.csv")
    (metrics / "train_log.csv").write_text("epoch,train_loss,test_accuracy\n1,0.9,0.5\n")
    wrapper = tmp_path / "no_torch.py"
    wrapper.write_text(NO_TORCH)
    args = ["--params", str(REPO / "params.yaml"), "--data", "data"]
    args += ["--metrics", "metrics/eval.json", "--log", "metrics/train_log.csv"]
    args += ["--predictions", "metrics/predictions.csv", "--out", "reports"]

    done = stage("report", *args, cwd=tmp_path, via=wrapper)
    assert done.returncode == 0, done.stderr
    report = (tmp_path / "reports" / "report.md").read_text()
    assert report.startswith("# mnist — mirror data (200 train / 50 test images)")
    assert "## Model card" in report
    figures = sorted(path.name for path in (tmp_path / "reports" / "figures").iterdir())
    assert figures == ["learning_curve.png", "misclassified.png", "test_predictions.png"]
    # The wrapper does block torch: the evaluate stage, which needs it, fails under it.
    blocked = stage("evaluate", "--help", cwd=tmp_path, via=wrapper)
    assert blocked.returncode != 0 and "torch" in blocked.stderr
