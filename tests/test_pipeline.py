"""The whole pipeline in a temp git repo, as a user drives it with dvc.

Copy the project, `dvc repro` on the embedded sample for 2 epochs, check the outputs'
invariants, commit, change `train.lr`, reproduce, commit, and compare with
`dvc metrics diff` / `dvc params diff`. Determinism: `dvc repro -f` changes nothing.
"""

import json
from pathlib import Path

import pandas as pd
import pytest

from conftest import run, set_params

pytestmark = pytest.mark.slow


def test_repro_commit_change_lr_and_diff(project: Path) -> None:
    set_params(project, data={"source": "embedded"}, train={"epochs": 2})
    run(["dvc", "repro"], project)

    metrics = json.loads((project / "metrics/eval.json").read_text())
    confusion = pd.read_csv(project / "metrics/confusion_matrix.csv", index_col=0)
    assert confusion.shape == (10, 10) and confusion.index.name == "actual"
    assert confusion.to_numpy().sum() == metrics["n_test"] == 1000
    diagonal_share = confusion.to_numpy().trace() / confusion.to_numpy().sum()
    assert metrics["accuracy"] == pytest.approx(diagonal_share, abs=1e-9)
    assert metrics["source"] == "embedded" and metrics["dataset"] == "mnist"
    assert metrics["accuracy"] > 0.7
    log = pd.read_csv(project / "metrics/train_log.csv")
    assert list(log.columns) == ["epoch", "train_loss", "test_accuracy"] and len(log) == 2
    assert len(pd.read_csv(project / "metrics/predictions.csv")) == 1000
    report = (project / "reports/report.md").read_text()
    assert report.startswith("# mnist — embedded data (4,000 train / 1,000 test images)")
    assert len(list((project / "reports/figures").glob("*.png"))) == 5
    counts = pd.read_csv(project / "metrics/confusion_counts.csv", dtype={"actual": str})
    assert len(counts) == 100 and counts["count"].sum() == 1000
    manifest = json.loads((project / "data/raw/manifest.json").read_text())
    assert manifest["source"] == "embedded"

    # Determinism: forcing every stage to rerun reproduces the lock byte for byte.
    lock = (project / "dvc.lock").read_text()
    run(["dvc", "repro", "-f"], project)
    assert (project / "dvc.lock").read_text() == lock
    noop = run(["dvc", "repro"], project)
    assert "Running stage" not in noop.stdout

    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", "lr 0.01"], project)
    set_params(project, train={"lr": 0.1})
    rerun = run(["dvc", "repro"], project)
    assert "Stage 'download' didn't change" in rerun.stdout
    assert "Running stage 'train'" in rerun.stdout
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", "lr 0.1"], project)

    diff = json.loads(run(["dvc", "metrics", "diff", "HEAD~1", "--json"], project).stdout)
    accuracy = diff["metrics/eval.json"]["accuracy"]
    new = json.loads((project / "metrics/eval.json").read_text())["accuracy"]
    assert accuracy["old"] == metrics["accuracy"] and accuracy["new"] == new
    assert accuracy["diff"] == pytest.approx(new - metrics["accuracy"])
    assert new != metrics["accuracy"]
    params = json.loads(run(["dvc", "params", "diff", "HEAD~1", "--json"], project).stdout)
    lr_change = params["params.yaml"]["train.lr"]
    assert (lr_change["old"], lr_change["new"]) == (0.01, 0.1)
    assert run(["dvc", "status", "--json"], project).stdout.strip() == "{}"
    assert run(["git", "status", "--porcelain"], project).stdout == ""
