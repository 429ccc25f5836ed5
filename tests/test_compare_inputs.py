"""``compare`` on malformed metrics, on either side: one line naming the revision, the file
and the problem, exit 2, no traceback, nothing written."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import REPO, run
from mnist_pipeline.tools.compare import CONFUSION, PER_CLASS, TRAIN_LOG, main

FILES = (PER_CLASS, CONFUSION, TRAIN_LOG)


def _replace(old: str, new: str, count: int = 1) -> Callable[[str], str]:
    def edit(text: str) -> str:
        assert old in text, old
        return text.replace(old, new, count)

    return edit


def _last_column_dropped(text: str) -> str:
    return "".join(line.rsplit(",", 1)[0] + "\n" for line in text.splitlines())


CONFLICT = "<<<<<<< HEAD\n0,0.9,0.98,0.9,100\n=======\n0,0.8,0.97,0.9,100\n>>>>>>> exp\n"
# file, edit, what the error line says
CASES = {
    "conflict_markers": (PER_CLASS, lambda t: t + CONFLICT, "merge-conflict markers at line 12"),
    "missing_column": (
        PER_CLASS,
        _replace("precision,recall,", "precision,"),
        "no column 'recall'",
    ),
    "non_numeric": (PER_CLASS, _replace("0,0.", "0,high"), "'high"),
    "nan": (PER_CLASS, _replace("\n1,", "\n1,nan", 1), "'nan"),
    "score_over_one": (PER_CLASS, _replace("\n1,0.", "\n1,7.", 1), "outside 0..1"),
    "duplicate_class": (
        PER_CLASS,
        lambda t: t + t.splitlines()[1] + "\n",
        "class '0' appears twice",
    ),
    "no_accuracy_column": (TRAIN_LOG, _last_column_dropped, "test_accuracy"),
    "log_nan_loss": (TRAIN_LOG, _replace("\n1,0.", "\n1,nan0.", 1), "train_loss"),
    "string_cell": (CONFUSION, _replace("\n0,98,", "\n0,many,"), "'many' is not a finite number"),
    "huge_cell": (CONFUSION, _replace("\n0,98,", "\n0,1e23,"), "count 1e+23 is not a whole number"),
    "negative_count": (CONFUSION, _replace("\n0,98,", "\n0,-3,"), "count -3 is not a whole number"),
    "fractional_count": (CONFUSION, _replace("\n0,98,", "\n0,97.5,"), "count 97.5 is not a whole"),
    "not_square": (CONFUSION, _replace("actual,0,", "actual,zero,"), "name different classes"),
}


@pytest.fixture
def metrics_repo(tmp_path: Path) -> Path:
    """A git repo whose HEAD holds the committed run's three metrics files."""
    repo = tmp_path / "repo"
    for name in FILES:
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, repo / name)
    run(["git", "init", "-q", "-b", "main"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "run"], repo)
    return repo


def _one_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err, err
    return err


def _broken(repo: Path, case: str, committed: bool) -> tuple[str, str]:
    """Break ``case``'s file in the workspace, or in a new commit (the workspace kept good):
    (file, what the error says)."""
    name, edit, says = CASES[case]
    good = (repo / name).read_text()
    (repo / name).write_text(edit(good))
    if committed:
        run(["git", "commit", "-qam", "broken"], repo)
        (repo / name).write_text(good)
    return name, says


@pytest.mark.parametrize("case", CASES)
def test_malformed_workspace_side_is_one_line(
    case: str,
    metrics_repo: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    name, says = _broken(metrics_repo, case, committed=False)
    monkeypatch.chdir(metrics_repo)
    assert main(["--rev", "HEAD"]) == 2
    err = _one_error(capsys)
    assert f"error: workspace:{name}: " in err and says in err, err
    assert not (metrics_repo / "compare").exists()


@pytest.mark.parametrize("case", ["conflict_markers", "negative_count", "no_accuracy_column"])
def test_malformed_committed_side_names_the_revision(
    case: str,
    metrics_repo: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    name, says = _broken(metrics_repo, case, committed=True)
    head = run(["git", "rev-parse", "--short=7", "HEAD"], metrics_repo).stdout.strip()
    monkeypatch.chdir(metrics_repo)
    assert main(["--rev", "HEAD"]) == 2
    err = _one_error(capsys)
    assert f"error: HEAD ({head}):{name}: " in err and says in err, err


def test_a_blob_revision_is_one_line(
    metrics_repo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(metrics_repo)
    assert main(["--rev", f"HEAD:{PER_CLASS}"]) == 2
    assert "names a git blob, not a commit" in _one_error(capsys)
