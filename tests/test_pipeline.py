"""The whole pipeline in a temp git repo, as a user drives it with dvc.

A copy of the session's reproduced project (`dvc repro` on the embedded sample for 2
epochs, committed): check the outputs' invariants, change `train.lr`, reproduce, commit,
and compare with `dvc metrics diff` / `dvc params diff`.
Outputs are readable by others (0644 files, 0755 folders); `dvc plots show` draws the
learning curves from the log the train stage writes.
"""

import json
import stat
from pathlib import Path

import pandas as pd
import pytest

from conftest import run, set_params

NOTEBOOK = ["accuracy", "cross_entropy", "macro_f1"]  # eval.json's first three

pytestmark = pytest.mark.slow


def plot_points(project: Path, name: str) -> list[dict]:
    """The data points of one plot in `dvc plots show --json` (the workspace)."""
    shown = json.loads(run(["dvc", "plots", "show", "--json"], project).stdout)
    (plot,) = shown["data"][name]
    return plot["content"]["data"]["values"]


def axis_titles(spec: object) -> set[tuple[str, str]]:
    """Every (axis, title) in a Vega-Lite spec's encodings, layers and facets included."""
    found = set()
    if isinstance(spec, dict):
        for axis in ("x", "y"):
            encoding = (spec.get("encoding") or {}).get(axis)
            if isinstance(encoding, dict) and encoding.get("title"):
                found.add((axis, encoding["title"]))
        for value in spec.values():
            found |= axis_titles(value)
    elif isinstance(spec, list):
        for value in spec:
            found |= axis_titles(value)
    return found


# Subprocess: `dvc repro`, `dvc plots show`, `dvc metrics/params diff` themselves.
@pytest.mark.usefixtures("umask_022")
def test_repro_commit_change_lr_and_diff(reproduced_copy: Path) -> None:
    project = reproduced_copy  # reproduced with umask 022 and committed, at lr 0.01

    metrics = json.loads((project / "metrics/eval.json").read_text())
    assert list(metrics) == [*NOTEBOOK, "ece", "robust_accuracy", "answered", "answered_accuracy"]
    reliability = pd.read_csv(project / "metrics/reliability.csv")  # the diagram's bins
    assert list(reliability.columns) == ["bin", "confidence", "accuracy", "count"]
    assert reliability["count"].sum() == 1000
    confusion = pd.read_csv(project / "metrics/confusion_matrix.csv", index_col=0)
    assert confusion.shape == (10, 10) and confusion.index.name == "actual"
    per_class = pd.read_csv(project / "metrics/per_class.csv")
    assert list(per_class.columns) == ["class", "precision", "recall", "f1", "support"]
    assert confusion.to_numpy().sum() == per_class["support"].sum() == 1000
    diagonal_share = confusion.to_numpy().trace() / confusion.to_numpy().sum()
    assert metrics["accuracy"] == pytest.approx(diagonal_share, abs=1e-9)
    assert metrics["macro_f1"] == pytest.approx(per_class["f1"].mean(), abs=1e-6)
    assert metrics["accuracy"] > 0.7
    log = pd.read_csv(project / "metrics/train_log.csv")
    assert list(log.columns) == ["epoch", "train_loss", "test_accuracy"] and len(log) == 2
    predictions = pd.read_csv(project / "metrics/predictions.csv")
    assert list(predictions.columns) == ["actual", "predicted", "confidence"]
    assert len(predictions) == 1000 and predictions["confidence"].between(0, 1).all()
    report = (project / "reports/report.md").read_text()
    assert report.startswith("# mnist — embedded data (4,000 train / 1,000 test images)")
    assert len(list((project / "reports/figures").glob("*.png"))) == 3
    counts = pd.read_csv(project / "metrics/confusion_counts.csv", dtype={"actual": str})
    assert len(counts) == 100 and counts["count"].sum() == 1000
    manifest = json.loads((project / "data/raw/manifest.json").read_text())
    assert manifest["source"] == "embedded" and manifest["dataset"] == "mnist"
    assert json.loads((project / "data/processed/manifest.json").read_text()) == manifest

    # Readable by a teammate or a web server: files 0644, folders 0755.
    for top in ("data", "models", "metrics", "reports"):
        for path in [project / top, *(project / top).rglob("*")]:
            mode = stat.S_IMODE(path.stat().st_mode)
            assert mode == (0o755 if path.is_dir() else 0o644), (path, oct(mode))

    # The learning curves: two charts with axis titles; the notebook's log draws one line
    # in each (train loss; test accuracy), every epoch of the log.
    shown = json.loads(run(["dvc", "plots", "show", "--json"], project).stdout)
    assert "errors" not in shown, shown["errors"]
    shown = shown["data"]
    assert ("y", "loss (train.loss)") in axis_titles(shown["Loss"])
    assert ("y", "accuracy") in axis_titles(shown["Accuracy"])
    assert ("x", "epoch") in axis_titles(shown["Loss"]) & axis_titles(shown["Accuracy"])
    assert {"Per-class scores (test set)", "metrics/confusion_counts.csv"} <= set(shown)
    assert [p["epoch"] for p in plot_points(project, "Loss")] == ["1", "2"]
    run(["dvc", "plots", "show", "-o", "plots"], project)  # git-ignored, like dvc_plots/

    # Determinism (a second clean clone reproduces the lock byte for byte) is
    # test_validate.py's test_two_clean_clones_give_identical_hashes_then_validate.
    noop = run(["dvc", "repro"], project)
    assert "Running stage" not in noop.stdout

    assert run(["git", "status", "--porcelain"], project).stdout == ""  # as committed
    set_params(project, train={"lr": 0.1})
    rerun = run(["dvc", "repro"], project)
    assert "Stage 'download' didn't change" in rerun.stdout
    assert "Running stage 'train'" in rerun.stdout
    assert not (project / ".dvc/tmp/train-checkpoint.pt").exists()  # removed on success
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
