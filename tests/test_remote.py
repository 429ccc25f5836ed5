"""Sharing the DVC cache through a remote: push, fresh clone, pull, nothing reruns; and the
registered model (dvc.yaml ``artifacts:``) fetched from a clone by ``dvc artifacts get``.

A local-directory remote stands in for S3/GCS (same `dvc push`/`dvc pull` code path).
"""

import json
from pathlib import Path

import pytest

from conftest import copy_reproduced, run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pushed(tmp_path_factory: pytest.TempPathFactory, reproduced: Path) -> tuple[Path, Path]:
    """(project, clone): a copy of the reproduced pipeline (embedded sample, 2 epochs), pushed
    to a local remote, the model version tagged ``mnist-classifier@v1.0.0``, then cloned."""
    root = tmp_path_factory.mktemp("remote")
    project = copy_reproduced(reproduced, root / "project")
    remote = root / "remote"
    run(["dvc", "remote", "add", "-d", "shared", str(remote)], project)
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", "pipeline + remote"], project)
    run(["git", "tag", "-a", "mnist-classifier@v1.0.0", "-m", "first model"], project)
    pushed = run(["dvc", "push"], project)
    assert remote.is_dir() and any(remote.rglob("*")), pushed.stdout
    clone = root / "clone"
    run(["git", "clone", "-q", str(project), str(clone)], root)
    return project, clone


# Subprocess: `dvc push`/`dvc pull` between a repo, a remote and a git clone.
def test_push_clone_pull_is_clean_without_rerunning(pushed: tuple[Path, Path]) -> None:
    project, clone = pushed
    assert not (clone / "models/model.safetensors").exists()
    run(["dvc", "pull"], clone)
    pulled = ("models/model.safetensors", "data/processed/test.safetensors", "reports/report.md")
    for path in pulled:
        assert (clone / path).read_bytes() == (project / path).read_bytes(), path
    assert run(["dvc", "status", "--json"], clone).stdout.strip() == "{}"
    assert json.loads((clone / "metrics/eval.json").read_text()) == json.loads(
        (project / "metrics/eval.json").read_text()
    )
    again = run(["dvc", "repro"], clone)
    assert "Running stage" not in again.stdout
    assert run(["git", "status", "--porcelain"], clone).stdout == ""


# Subprocess: `dvc artifacts get`/`dvc get` from another directory.
def test_registered_model_is_fetched_from_a_clone(
    pushed: tuple[Path, Path], tmp_path: Path
) -> None:
    """From another directory: the tagged version and the latest, the trained bytes each."""
    project, clone = pushed
    run(["dvc", "artifacts", "get", str(clone), "mnist-classifier", "--rev", "v1.0.0"], tmp_path)
    assert (tmp_path / "model.onnx").read_bytes() == (project / "models/model.onnx").read_bytes()
    tag = "mnist-classifier@v1.0.0"  # the version's torch weights: the same commit
    run(["dvc", "get", str(clone), "models/model.safetensors", "--rev", tag], tmp_path)
    weights = (tmp_path / "model.safetensors").read_bytes()
    assert weights == (project / "models/model.safetensors").read_bytes()
    latest = tmp_path / "latest"
    run(["dvc", "artifacts", "get", str(clone), "mnist-classifier", "-o", str(latest)], tmp_path)
    assert latest.read_bytes() == (project / "models/model.onnx").read_bytes()
