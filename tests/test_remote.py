"""Sharing the DVC cache through a remote: push, fresh clone, pull, nothing reruns.

A local-directory remote stands in for S3/GCS (same `dvc push`/`dvc pull` code path).
"""

import json
from pathlib import Path

import pytest

from conftest import run, set_params

pytestmark = pytest.mark.slow


def test_push_clone_pull_is_clean_without_rerunning(project: Path, tmp_path: Path) -> None:
    set_params(project, data={"source": "embedded"}, train={"epochs": 1})
    run(["dvc", "repro", "-q"], project)
    remote = tmp_path / "remote"
    run(["dvc", "remote", "add", "-d", "shared", str(remote)], project)
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", "pipeline + remote"], project)
    pushed = run(["dvc", "push"], project)
    assert remote.is_dir() and any(remote.rglob("*")), pushed.stdout

    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(project), str(clone)], tmp_path)
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
