"""Comparing runs: `dvc plots diff` with the heatmap template, and `reporting.compare`.

Fast tests cover the compare module's pure parts (confusion difference, recall movers,
tables, revision names, the report files) on made-up runs and a tiny git repo. The slow
ones build one project copy with two committed runs (train.lr 0.01, then 0.1; embedded
data, 1 epoch) and check `dvc plots diff HEAD~1` and `python -m mnist_pipeline.tools.compare
--rev HEAD~1` against the two revisions' own files.
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
from io import StringIO
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import copy_project, run, set_params
from mnist_pipeline.core.errors import PipelineError
from mnist_pipeline.tools.compare import (
    COMPARE_FIGURES,
    Comparison,
    Revision,
    RunFiles,
    comparison_markdown,
    confusion_diff,
    diff_rows,
    main,
    recall_movers,
    resolve,
    write_report,
)

CLASSES = ["0", "1", "2"]


def frame(rows: list[list[int]], classes: list[str] = CLASSES) -> pd.DataFrame:
    result = pd.DataFrame(rows, index=classes, columns=classes)
    result.index.name = "actual"
    return result


def per_class(recalls: list[float], classes: list[str] = CLASSES) -> pd.DataFrame:
    """``per_class.csv`` of a run as ``load_run`` reads it: indexed by class name."""
    frame = pd.DataFrame({"precision": 0.5, "recall": recalls, "f1": 0.5, "support": 10})
    return frame.set_axis(pd.Index(classes, name="class"))


# ---------------------------------------------------------------------- pure functions


def test_confusion_diff_is_new_minus_old_cell_by_cell() -> None:
    old = frame([[5, 1, 0], [2, 3, 1], [0, 0, 6]])
    new = frame([[6, 0, 0], [0, 5, 1], [1, 0, 5]])
    diff = confusion_diff(old, new)
    assert diff.to_numpy().tolist() == [[1, -1, 0], [-2, 2, 0], [1, 0, -1]]
    assert list(diff.index) == CLASSES and list(diff.columns) == CLASSES
    assert diff.index.name == "actual"
    # Each actual row keeps its total: the same test images, predicted differently.
    assert (diff.to_numpy().sum(axis=1) == 0).all()


def test_confusion_diff_refuses_other_classes() -> None:
    other = frame([[1, 0, 0], [0, 1, 0], [0, 0, 1]], classes=["a", "b", "c"])
    assert confusion_diff(frame([[1, 0, 0], [0, 1, 0], [0, 0, 1]]), other) is None


def test_recall_movers_largest_change_first_ties_in_class_order() -> None:
    old = per_class([0.5, 0.9, 0.4])
    new = per_class([0.7, 0.7, 0.4])
    movers = recall_movers(old, new)
    assert list(movers.columns) == ["class", "old", "new", "delta"]
    # 0 and 1 both moved by 0.2: class order breaks the tie; 2 did not move: left out.
    assert movers["class"].tolist() == ["0", "1"]
    assert movers["delta"].tolist() == [0.2, -0.2]
    assert movers.loc[1, ["old", "new"]].tolist() == [0.9, 0.7]
    assert recall_movers(old, new, top=1)["class"].tolist() == ["0"]
    assert recall_movers(old, old).empty


def test_params_and_metrics_tables_from_dvc_json() -> None:
    params = {"params.yaml": {"train.lr": {"old": 0.01, "new": 0.1, "diff": 0.09}}}
    assert diff_rows(params) == [["params.yaml", "train.lr", "0.01", "0.1", "+0.09"]]
    verify = {"params.yaml": {"data.verify": {"old": True, "new": False, "diff": -1}}}
    assert diff_rows(verify)[0][-1] == "changed"  # dvc subtracts booleans too
    metrics = {
        "metrics/eval.json": {
            "macro_f1": {"old": 0.5, "new": 0.75, "diff": 0.25},
            "accuracy": {"old": 0.5, "new": 0.6, "diff": 0.1},
            "per_class.0.recall": {"old": 0.1, "new": 0.2, "diff": 0.1},
            "dataset": {"old": "mnist", "new": "mnist"},
            "loss_name": {"old": "mse", "new": "cross_entropy"},
            "step": {"old": None, "new": 10},
            "n_test": {"old": 1000, "new": 1000, "diff": 0},
        }
    }
    rows = diff_rows(metrics)
    # Headline first; per-class left to the movers table; an unchanged string left out.
    assert [row[1] for row in rows] == ["accuracy", "macro_f1", "loss_name", "n_test", "step"]
    assert rows[0] == ["metrics/eval.json", "accuracy", "0.5", "0.6", "+0.1"]
    assert [row[-1] for row in rows[2:]] == ["changed", "0", "new"]
    assert rows[4][2] == "—"


def test_revision_labels() -> None:
    sha = "1a2b3c4d" * 5
    assert Revision("HEAD~1", sha).label == "HEAD~1 (1a2b3c4)"
    assert Revision(sha[:10], sha).label == "1a2b3c4"
    assert Revision("workspace", None).label == "workspace"


# --------------------------------------------------------- the report, without dvc


def made_up_comparison() -> Comparison:
    history = pd.DataFrame({"epoch": [1, 2], "train_loss": [0.8, 0.6], "test_accuracy": [0.5, 0.6]})
    old_run = RunFiles(
        per_class([0.5, 0.9, 0.4]),
        frame([[3, 3, 0], [0, 5, 1], [2, 2, 2]]),
        history,
    )
    new_run = RunFiles(
        per_class([0.7, 0.7, 0.4]),
        frame([[4, 2, 0], [1, 4, 1], [2, 2, 2]]),
        history.assign(train_loss=[0.5, 0.3], test_accuracy=[0.6, 0.7]),
    )
    return Comparison(
        old=Revision("HEAD~1", "ab" * 20),
        new=Revision("workspace", None),
        params={"params.yaml": {"train.lr": {"old": 0.01, "new": 0.1, "diff": 0.09}}},
        metrics={"metrics/eval.json": {"accuracy": {"old": 0.5, "new": 0.6, "diff": 0.1}}},
        old_run=old_run,
        new_run=new_run,
    )


def test_report_files_are_complete_and_deterministic(tmp_path: Path) -> None:
    result = made_up_comparison()
    write_report(result, tmp_path / "a")
    write_report(result, tmp_path / "b")
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted([*COMPARE_FIGURES.values(), "compare.md", "compare.json"])
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    text = re.sub(" +", " ", (tmp_path / "a" / "compare.md").read_text())  # tables unpadded
    assert text.startswith("# workspace vs HEAD~1 (ababab")
    assert "Both runs: 30 test images in 3 classes (0, 1, 2)." in text
    assert "| params.yaml | train.lr | 0.01 | 0.1 | +0.09 |" in text
    assert "| metrics/eval.json | accuracy | 0.5 | 0.6 | +0.1 |" in text
    assert "| 0 | 0.5000 | 0.7000 | +0.2000 |" in text
    assert "| 0 | +1 | -1 | 0 |" in text  # the difference table, row actual = 0
    for png in COMPARE_FIGURES.values():
        assert f"]({png})" in text
    numbers = json.loads((tmp_path / "a" / "compare.json").read_text())
    assert numbers["confusion"]["diff"] == [[1, -1, 0], [1, -1, 0], [0, 0, 0]]
    assert numbers["recall_movers"][0] == {"class": "0", "old": 0.5, "new": 0.7, "delta": 0.2}


def test_report_never_replaces_a_folder_it_did_not_write(tmp_path: Path) -> None:
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "report.md").write_text("keep me")
    with pytest.raises(PipelineError, match=r"holds report\.md, which this stage did not write"):
        write_report(made_up_comparison(), tmp_path / "reports")
    assert (tmp_path / "reports" / "report.md").read_text() == "keep me"


@pytest.mark.parametrize("out", [".", "..", "compare"])
def test_out_holding_a_compare_md_and_a_repository_deletes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, out: str
) -> None:
    """``--out .`` in a checkout where a ``compare.md`` lies around: refused in one line
    naming the folder, and the working tree, ``.git`` and the cache are all still there."""
    work = tmp_path / "checkout"
    (work / ".git").mkdir(parents=True)
    (work / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (work / ".dvc" / "cache").mkdir(parents=True)
    (work / "compare").mkdir()
    for name in ("compare.md", "params.yaml", "compare/compare.md", "compare/notes.txt"):
        (work / name).write_text("keep me")
    monkeypatch.chdir(work)
    before = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*"))
    with pytest.raises(PipelineError, match=rf"^cannot replace {re.escape(out)}: "):
        write_report(made_up_comparison(), Path(out))
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == before


def test_report_across_datasets_has_no_difference_heatmap() -> None:
    result = made_up_comparison()
    other = frame([[1, 0, 0], [0, 1, 0], [0, 0, 1]], classes=["a", "b", "c"])
    scores = per_class([0.7, 0.7, 0.4], classes=["a", "b", "c"])
    new_run = RunFiles(scores, other, result.new_run.history)
    text = comparison_markdown(dataclasses.replace(result, new_run=new_run))
    assert "**Warning:** the runs saw different data" in text
    assert "no cell-by-cell difference" in text and COMPARE_FIGURES["confusion_diff"] not in text


# ----------------------------------------------------------- revisions in a tiny repo


@pytest.fixture
def tiny_repo(tmp_path: Path) -> Path:
    """A git repo with one commit and a fake DVC experiment ref (no dvc needed)."""
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "params.yaml").write_text("train: {lr: 0.01}\n")
    run(["git", "init", "-q", "-b", "main"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "one"], repo)
    head = run(["git", "rev-parse", "HEAD"], repo).stdout.strip()
    # Where `dvc exp run` keeps an experiment: refs/exps/<base[:2]>/<base[2:]>/<name>.
    run(["git", "update-ref", f"refs/exps/{head[:2]}/{head[2:]}/tidy-newt", head], repo)
    run(["git", "update-ref", "refs/exps/exec/EXEC_HEAD", head], repo)
    return repo


def test_resolve_commits_and_experiment_names(tiny_repo: Path) -> None:
    head = run(["git", "rev-parse", "HEAD"], tiny_repo).stdout.strip()
    assert resolve(tiny_repo, "HEAD") == Revision("HEAD", head)
    assert resolve(tiny_repo, "main").commit == head
    assert resolve(tiny_repo, "tidy-newt") == Revision("tidy-newt", head)
    assert resolve(tiny_repo, "workspace") == Revision("workspace", None)
    with pytest.raises(PipelineError, match="unknown revision 'EXEC_HEAD'"):
        resolve(tiny_repo, "EXEC_HEAD")


def test_unknown_rev_is_one_line(
    tiny_repo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tiny_repo)
    assert main(["--rev", "no-such-rev"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: unknown revision 'no-such-rev'")
    assert not (tiny_repo / "compare").exists()


def test_rev_without_metrics_is_one_line(
    tiny_repo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tiny_repo)
    assert main(["--rev", "HEAD"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has no metrics/per_class.csv committed" in err


# ------------------------------------------------------- two committed runs, real dvc


def commit(project: Path, message: str) -> None:
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", message], project)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project with two committed runs: train.lr 0.01 (HEAD~1), then 0.1 (HEAD)."""
    project = copy_project(tmp_path_factory.mktemp("compare") / "project")
    commit(project, "project")  # as a clone: the pipeline never runs in an empty repo
    set_params(project, data={"source": "embedded"}, train={"epochs": 1})
    run(["dvc", "repro"], project)
    commit(project, "lr 0.01")
    set_params(project, train={"lr": 0.1})
    run(["dvc", "repro"], project)
    commit(project, "lr 0.1")
    return project


def at_rev(project: Path, rev: str, path: str) -> str:
    return run(["git", "show", f"{rev}:{path}"], project).stdout


@pytest.mark.slow
def test_plots_diff_shows_both_revisions_and_the_heatmap(two_runs: Path, tmp_path: Path) -> None:
    out = tmp_path / "plots"
    run(["dvc", "plots", "diff", "HEAD~1", "-o", str(out)], two_runs)
    html = (out / "index.html").read_text()
    assert "HEAD~1" in html and "workspace" in html
    assert "cell_count" in html  # the heatmap template's count field, written in each cell

    plots = json.loads(run(["dvc", "plots", "diff", "HEAD~1", "--json"], two_runs).stdout)
    assert not plots.get("errors")
    for name in ("Loss", "Accuracy"):
        (curve,) = plots["data"][name]
        assert sorted(curve["revisions"]) == ["HEAD~1", "workspace"]
    # Per-class bars: each class gets one bar per revision, side by side, in every score.
    (bars,) = plots["data"]["Per-class scores (test set)"]
    assert sorted(bars["revisions"]) == ["HEAD~1", "workspace"]
    encoding = bars["content"]["spec"]["encoding"]
    assert encoding["xOffset"]["field"] == encoding["color"]["field"] == "rev"
    assert bars["content"]["facet"]["row"]["field"] == "field"
    for rev, git_rev in (("HEAD~1", "HEAD~1"), ("workspace", "HEAD")):
        scores = pd.read_csv(StringIO(at_rev(two_runs, git_rev, "metrics/per_class.csv")))
        rows = [d for d in bars["content"]["data"]["values"] if d["rev"] == rev]
        assert len(rows) == 3 * len(scores) == 30
        recall = {d["class"]: float(d["recall"]) for d in rows if d["field"] == "recall"}
        assert recall == {str(c): r for c, r in zip(scores["class"], scores["recall"], strict=True)}
    (heatmap,) = plots["data"]["metrics/confusion_counts.csv"]
    assert sorted(heatmap["revisions"]) == ["HEAD~1", "workspace"]
    spec = heatmap["content"]
    assert spec["facet"]["column"]["field"] == "rev"
    marks = [
        layer["mark"] if isinstance(layer["mark"], str) else layer["mark"]["type"]
        for layer in spec["spec"]["layer"]
    ]
    assert marks == ["rect", "text"]
    assert spec["spec"]["layer"][1]["encoding"]["text"]["field"] == "cell_count"
    # The data of each revision is that revision's confusion matrix, cell by cell.
    for rev, git_rev in (("HEAD~1", "HEAD~1"), ("workspace", "HEAD")):
        wide = pd.read_csv(
            StringIO(at_rev(two_runs, git_rev, "metrics/confusion_matrix.csv")),
            index_col=0,
        )
        cells = [d for d in spec["data"]["values"] if d["rev"] == rev]
        assert len(cells) == wide.size == 100
        for cell in cells:
            assert int(cell["count"]) == wide.loc[int(cell["actual"]), cell["predicted"]]


@pytest.mark.slow
def test_compare_numbers_are_the_two_revisions_own(two_runs: Path) -> None:
    command = [sys.executable, "-m", "mnist_pipeline", "compare", "--rev", "HEAD~1"]
    result = run(command, two_runs, src=two_runs / "src")
    assert result.returncode == 0, result.stderr
    out = two_runs / "compare"
    assert (out / "compare.md").is_file()
    for png in COMPARE_FIGURES.values():
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
    numbers = json.loads((out / "compare.json").read_text())

    old_eval = json.loads(at_rev(two_runs, "HEAD~1", "metrics/eval.json"))
    old_scores = pd.read_csv(StringIO(at_rev(two_runs, "HEAD~1", "metrics/per_class.csv")))
    new_scores = pd.read_csv(two_runs / "metrics/per_class.csv")
    new_eval = json.loads((two_runs / "metrics/eval.json").read_text())
    assert numbers["old"]["commit"] == run(["git", "rev-parse", "HEAD~1"], two_runs).stdout.strip()
    assert numbers["new"] == {"rev": "workspace", "commit": None}
    metrics = numbers["metrics"]["metrics/eval.json"]
    for key in ("accuracy", "loss", "macro_f1"):
        assert (metrics[key]["old"], metrics[key]["new"]) == (old_eval[key], new_eval[key])
    lr = numbers["params"]["params.yaml"]["train.lr"]
    assert (lr["old"], lr["new"]) == (0.01, 0.1)

    def wide(text: str) -> np.ndarray:
        return pd.read_csv(StringIO(text), index_col=0).to_numpy()

    old = wide(at_rev(two_runs, "HEAD~1", "metrics/confusion_matrix.csv"))
    new = wide((two_runs / "metrics/confusion_matrix.csv").read_text())
    confusion = numbers["confusion"]
    assert confusion["old"] == old.tolist() and confusion["new"] == new.tolist()
    assert confusion["diff"] == (new - old).tolist()
    assert numbers["recall_movers"]
    for mover in numbers["recall_movers"]:
        name = int(mover["class"])
        assert mover["old"] == old_scores.set_index("class").loc[name, "recall"]
        assert mover["new"] == new_scores.set_index("class").loc[name, "recall"]

    text = re.sub(" +", " ", (out / "compare.md").read_text())  # tables unpadded
    assert "| params.yaml | train.lr | 0.01 | 0.1 | +0.09 |" in text
    row = re.search(r"^\| metrics/eval\.json \| accuracy \| (\S+) \| (\S+) \|", text, re.M)
    assert row and (float(row[1]), float(row[2])) == (old_eval["accuracy"], new_eval["accuracy"])
    assert result.stdout.strip().endswith("compare: compare/compare.md")
    # compare/ is git-ignored and outside every DVC output: nothing looks changed.
    assert run(["git", "status", "--porcelain"], two_runs).stdout == ""
    assert run(["dvc", "status", "--json"], two_runs).stdout.strip() == "{}"
