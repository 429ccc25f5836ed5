"""Hardening, round 2 (issue 20): what a stage may replace, outputs that change together,
the file-size limit, bounded reads of a mirror's files, the ranks' lifetime under
a real SIGTERM, machine-sized ``train.processes``, paths with spaces, CI running the tests.

The rule behind most of them: no command deletes or replaces anything it did not create,
and a stage's outputs change together or not at all (``core/io.py``).
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from conftest import (
    REPO,
    copy_project,
    error_line,
    git_env,
    make_split,
    run,
    set_params,
    stage,
    stage_here,
    stage_module,
    write_idx_set,
    write_manifest,
)
from mnist_pipeline.core.cli import entry_point
from mnist_pipeline.core.errors import PipelineError
from mnist_pipeline.core.io import atomic_dir, outputs, write_json, write_text
from mnist_pipeline.data.splits import save_split
from test_distributed import processes_of

PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())


def params_file(path: Path, **train: object) -> Path:
    raw = yaml.safe_load(yaml.safe_dump(PARAMS))
    raw["train"].update(train)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (hidden ones too) and its bytes."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".git/" not in p.as_posix()
    }


def file_size_limit(limit: int) -> Callable[[], None]:
    """A ``preexec_fn``: the child may write no file past ``limit`` bytes (``ulimit -f``)."""
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def run_limited(
    cmd: list[str], cwd: Path, limit: int, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    env = {**git_env(), "PYTHONPATH": str(REPO / "src")}
    # Not measured by `make coverage`: the limit would refuse coverage's own data file too.
    env = {key: value for key, value in env.items() if not key.startswith("COVERAGE_")}
    return subprocess.run(
        cmd,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=file_size_limit(limit),
    )


def script(name: str) -> list[str]:
    return [sys.executable, str(REPO / "stages" / f"{name}.py")]


# ------------------------------------------ items 1, 2: a folder output replaces its folder


@pytest.mark.parametrize("out", [".", ".."])
def test_a_folder_output_never_replaces_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, out: str
) -> None:
    (tmp_path / "notes.txt").write_text("keep")
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path.parent)
    with (
        pytest.raises(
            PipelineError, match=f"^cannot replace {out}: it is the current directory"
        ) as err,
        atomic_dir(Path(out)) as tmp,
    ):
        write_json({}, tmp / "manifest.json")
    assert "\n" not in str(err.value)
    assert snapshot(tmp_path.parent) == before


def test_a_folder_output_replaces_an_earlier_run_an_empty_or_a_new_folder(
    tmp_path: Path,
) -> None:
    (tmp_path / "earlier" / "figures").mkdir(parents=True)
    (tmp_path / "earlier" / "report.md").write_text("old")
    (tmp_path / "earlier" / "figures" / "gone.png").write_text("old")
    (tmp_path / "empty").mkdir()
    for name in ("earlier", "empty", "new"):
        with atomic_dir(tmp_path / name) as tmp:
            write_text("new", tmp / "report.md")
        assert snapshot(tmp_path / name) == {"report.md": b"new"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["earlier", "empty", "new"]


def test_download_out_dot_deletes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The issue's repro: ``cd d; download --out .`` wiped ``d``."""
    mirror = write_idx_set(tmp_path / "mirror")
    work = tmp_path / "d"
    work.mkdir()
    (work / "notes.txt").write_text("keep")
    raw = yaml.safe_load(yaml.safe_dump(PARAMS))
    raw["data"].update(source="mirror", mirror=str(mirror))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    result = stage_here(capsys, "download", "--params", "../params.yaml", "--out", ".", cwd=work)
    assert error_line(result).startswith("error: cannot replace .: it is the current directory")
    assert snapshot(work) == {"notes.txt": b"keep"}


# ------------------------------------- items 6, 7: outputs together, the file-size limit


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scratch project after preprocess, train (1 epoch) and evaluate on 200/50 images."""
    root = tmp_path_factory.mktemp("run")
    params_file(root / "params.yaml", epochs=1, hidden=[64])
    write_manifest(write_idx_set(root / "data" / "raw"))
    for name in ("preprocess", "train", "evaluate"):
        with contextlib.chdir(root):
            assert entry_point(stage_module(name).main)(stage_args(name)) == 0
    return root


def stage_args(name: str) -> list[str]:
    """The stage's arguments as dvc.yaml passes them."""
    import shlex

    cmd = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"][name]["cmd"]
    tokens = shlex.split(cmd)
    return tokens[tokens.index(f"stages/{name}.py") + 1 :]


# Limits under one output of each stage and over the others (the log, eval.json).
SIZE_LIMITS = {"preprocess": 64 * 2**10, "train": 2 * 2**10, "evaluate": 400, "report": 8 * 2**10}


# Subprocess: `ulimit -f` (RLIMIT_FSIZE) is set on a child process.
@pytest.mark.slow
@pytest.mark.parametrize("name", SIZE_LIMITS)
def test_file_size_limit_is_one_line_and_changes_no_output(pipeline_run: Path, name: str) -> None:
    """``ulimit -f`` under one of the stage's outputs: one line naming it and the limit,
    exit 2, and none of the stage's outputs changed (train: not its log either)."""
    before = snapshot(pipeline_run)
    params = params_file(pipeline_run / "params2.yaml", epochs=2, hidden=[64])
    args = [a if a != "params.yaml" else str(params) for a in stage_args(name)]
    try:
        result = run_limited([*script(name), *args], pipeline_run, SIZE_LIMITS[name])
    finally:
        params.unlink()
    line = error_line(result)
    assert "File too large" in line
    assert snapshot(pipeline_run) == before


@pytest.mark.slow
def test_evaluate_failing_on_its_fifth_file_changes_none_of_the_five(
    tmp_path: Path, pipeline_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copytree(pipeline_run, tmp_path / "run")
    pipeline_run = tmp_path / "run"
    args = stage_args("evaluate")
    for flag in ("--metrics", "--per-class", "--confusion", "--counts", "--predictions"):
        (pipeline_run / args[args.index(flag) + 1]).write_text("an earlier run's\n")
    before = snapshot(pipeline_run)
    (pipeline_run / "blocker").write_text("a file where a folder should be")
    args[args.index("--predictions") + 1] = "blocker/predictions.csv"
    result = stage_here(capsys, "evaluate", *args, cwd=pipeline_run)
    assert "blocker is a file, not a directory" in error_line(result)
    (pipeline_run / "blocker").unlink()
    assert snapshot(pipeline_run) == before


def test_outputs_commit_all_or_none(tmp_path: Path) -> None:
    old = {"a.json": b"old a", "b.json": b"old b"}
    for name, content in old.items():
        (tmp_path / name).write_bytes(content)
    with pytest.raises(RuntimeError), outputs() as out:
        write_json({"new": 1}, out.file(tmp_path / "a.json"))
        write_json({"new": 2}, out.file(tmp_path / "b.json"))
        raise RuntimeError("the last write fails")
    assert snapshot(tmp_path) == old
    with outputs() as out:
        write_json({"new": 1}, out.file(tmp_path / "a.json"))
        write_json({"new": 2}, out.file(tmp_path / "b.json"))
    assert sorted(snapshot(tmp_path)) == ["a.json", "b.json"]
    assert (tmp_path / "b.json").read_text() == '{\n  "new": 2\n}\n'


# -------------------------------------------------- item 17: temp names ignored and cleaned


# Subprocess: git itself decides what it ignores.
def test_temp_siblings_are_ignored_by_git_and_removed_by_the_next_run(tmp_path: Path) -> None:
    project = copy_project(tmp_path / "project")
    left = [
        ".reports.k1ll3d00.tmp/reports/figures/confusion.png",
        "metrics/.eval.json.k1ll3d00.tmp/eval.json",
        "models/.model.safetensors.k1ll3d00.tmp",
    ]
    for name in left:
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text("a killed run's")
    status = run(["git", "status", "--porcelain", "--untracked-files=all"], project).stdout
    assert not [line for line in status.splitlines() if ".tmp" in line]
    with outputs() as out:
        write_json({}, out.file(project / "metrics" / "eval.json"))
    with atomic_dir(project / "reports") as tmp:
        write_text("", tmp / "report.md")
    assert not list((project / "metrics").glob(".*.tmp")) and not list(project.glob(".*.tmp"))


# --------------------------------------------------- item 3: bounded reads of a mirror

DECLARED_SHAPE = (1000, 28, 28)
DECLARED_BYTES = 16 + 1000 * 28 * 28  # header + payload


def bomb_mirror(folder: Path, gz: bool) -> Path:
    """A mirror whose train images declare [1000, 28, 28] and hold 2 GiB (a sparse file), or
    (``gz``) a 64 KiB gzip file that inflates to 64 MiB."""
    folder.mkdir()
    header = bytes([0, 0, 8, 3]) + b"".join(d.to_bytes(4, "big") for d in DECLARED_SHAPE)
    name = folder / ("train-images-idx3-ubyte" + (".gz" if gz else ""))
    if gz:
        name.write_bytes(gzip.compress(header + bytes(64 * 2**20), compresslevel=1))
    else:
        with open(name, "wb") as handle:
            handle.write(header)
            handle.truncate(2**31)
    return name


# Subprocess: `ulimit -f` (RLIMIT_FSIZE) is set on a child process.
@pytest.mark.parametrize("kind", ["raw", "gz"])
def test_a_bomb_stops_at_the_size_its_header_declares(tmp_path: Path, kind: str) -> None:
    """Under a file-size limit of the declared size + 64 KiB (any more and the write itself
    fails), the download stops one byte past the declared size, with one line naming the
    file and the declared shape."""
    bomb = bomb_mirror(tmp_path / "mirror", kind == "gz")
    raw = yaml.safe_load(yaml.safe_dump(PARAMS))
    raw["data"].update(source="mirror", mirror=str(bomb.parent), dataset="idx")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    result = run_limited(
        [*script("download"), "--params", "params.yaml", "--out", "raw"],
        tmp_path,
        DECLARED_BYTES + 2**16,
        timeout=180,
    )
    line = error_line(result)
    assert line.startswith(f"error: {bomb}: IDX data has trailing")
    assert (
        f"header declares shape {list(DECLARED_SHAPE)} (784000 bytes) but the file holds more"
        in line
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mirror", "params.yaml"]


def test_a_gzip_member_that_inflates_past_the_header_is_stopped_in_memory_too() -> None:
    """The bound holds on the decompressed stream: a 10 KiB gzip member that inflates to
    10 MiB, behind a header declaring 10 bytes, is refused having inflated little of it."""
    import tracemalloc

    from mnist_pipeline.data.idx import read_idx_bytes

    body = bytes([0, 0, 8, 1]) + (10).to_bytes(4, "big") + bytes(10 * 2**20)
    stream = io.BufferedReader(io.BytesIO(gzip.compress(body)))
    tracemalloc.start()
    try:
        with pytest.raises(
            PipelineError, match=r"shape \[10\] \(10 bytes\) but the file holds more"
        ):
            read_idx_bytes(stream, "mirror/y.gz")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**20, peak


# ------------------------------------------- item 4: the train stage owns its ranks' lifetime


@pytest.fixture
def two_rank_run(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path, dict[str, bytes]]]:
    """A ``train.processes: 2`` run of 10,000 epochs on 400 synthetic images, under way
    (its first epoch checkpointed) beside an earlier run's model and log."""
    save_split(make_split(400, 1), tmp_path / "processed" / "train.safetensors")
    save_split(make_split(100, 2), tmp_path / "processed" / "test.safetensors")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "model.safetensors").write_bytes(b"the earlier model")
    (tmp_path / "out" / "log.csv").write_bytes(b"epoch,train_loss,test_accuracy\n1,0.5,0.5\n")
    before = snapshot(tmp_path / "out")
    params = params_file(tmp_path / "params.yaml", epochs=10_000, processes=2, hidden=[16])
    out = tmp_path / "out"
    args = ["--params", str(params), "--data", str(tmp_path / "processed")]
    args += ["--model", str(out / "model.safetensors"), "--history", str(out / "log.csv")]
    checkpoint = tmp_path / "checkpoint" / "train.pt"
    args += ["--checkpoint", str(checkpoint)]
    proc = subprocess.Popen(
        [*script("train"), *args],
        cwd=tmp_path,
        env={**git_env(), "PYTHONPATH": str(REPO / "src")},
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 240
    while not checkpoint.exists() and time.monotonic() < deadline:
        time.sleep(0.2)  # until an epoch is checkpointed: both ranks are training
    assert len(processes_of(tmp_path)) >= 3, "the ranks never started"  # the stage and 2 ranks
    yield proc, tmp_path, before
    for pid in processes_of(tmp_path):  # whatever the stage left: the test fails, nothing lingers
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


# Subprocess: a real SIGTERM to the stage, whose ranks are processes.
@pytest.mark.slow
def test_sigterm_stops_every_rank_and_no_output_changes_afterwards(
    two_rank_run: tuple[subprocess.Popen[str], Path, dict[str, bytes]],
) -> None:
    proc, root, before = two_rank_run
    start = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    seconds = time.monotonic() - start
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert stderr.strip().splitlines()[-1].startswith("error: interrupted by SIGTERM")
    assert "Traceback" not in stderr
    assert processes_of(root) == [], "a rank outlived the stage"
    print(f"SIGTERM to a 2-rank run: the stage and every rank gone in {seconds:.1f} s")
    time.sleep(3)  # an orphaned rank would log its next epoch here
    assert snapshot(root / "out") == before


# Subprocess: a real SIGKILL to one rank process.
@pytest.mark.slow
def test_a_rank_killed_like_the_oom_killer_does_is_one_line(
    two_rank_run: tuple[subprocess.Popen[str], Path, dict[str, bytes]],
) -> None:
    proc, root, before = two_rank_run
    ranks = [
        pid for pid in processes_of(root) if b"-u" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]
    os.kill(max(ranks), signal.SIGKILL)
    proc.wait(timeout=120)
    result = subprocess.CompletedProcess(proc.args, proc.returncode, "", proc.stderr.read())
    line = error_line(result)
    assert "was killed by SIGKILL (what the out-of-memory killer sends)" in line
    assert processes_of(root) == []
    assert snapshot(root / "out") == before


# ---------------------------------------------- item 19: processes bounded by the machine


# Subprocess: the stage would hand its own command line to torchrun; no rank may start.
def test_more_processes_than_cores_is_one_line_before_any_rank_starts(tmp_path: Path) -> None:
    cores = len(os.sched_getaffinity(0))
    save_split(make_split(40, 1), tmp_path / "processed" / "train.safetensors")
    save_split(make_split(20, 2), tmp_path / "processed" / "test.safetensors")
    params = params_file(tmp_path / "params.yaml", processes=cores + 1, batch_size=64)
    result = stage("train", "--params", str(params), "--data", "processed",
                   "--model", "m.safetensors", "--history", "log.csv", cwd=tmp_path)  # fmt: skip
    line = error_line(result)
    assert f"train.processes: {cores + 1} is more than the {cores} CPU cores" in line
    assert not (tmp_path / "m.safetensors").exists() and not (tmp_path / "log.csv").exists()


# ------------------------------------------------ item 13: a checkout path with spaces


# Subprocess: `make` and its shell quoting are what is tested.
@pytest.mark.slow
def test_make_run_and_validate_in_a_path_with_spaces(tmp_path: Path) -> None:
    project = copy_project(tmp_path / "a checkout" / "with spaces")
    (project / ".venv").symlink_to(Path(sys.executable).parent.parent)
    mirror = write_idx_set(tmp_path / "mirror")  # 200/50 synthetic images: a short run
    data = {"source": "mirror", "mirror": str(mirror), "verify": False}
    set_params(project, data=data, train={"epochs": 1})
    make = ["make", "-o", ".venv/.installed"]  # the shared venv: never reinstalled here
    validate = run([*make, "validate"], project, check=False, timeout=300)
    assert validate.returncode == 0, validate.stdout + validate.stderr
    result = run([*make, "run"], project, check=False, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "accuracy" in result.stdout and (project / "reports" / "report.md").is_file()


# ------------------------------------------------------ item 22: CI runs the test suite


def test_the_workflow_runs_the_test_suite() -> None:
    workflow = yaml.safe_load((REPO / ".github" / "workflows" / "pipeline.yml").read_text())
    runs = [step.get("run") for step in workflow["jobs"]["pipeline"]["steps"]]
    assert "make test" in runs
    assert runs.index("make test") > runs.index("make venv")
    ci = next(
        line for line in (REPO / "Makefile").read_text().splitlines() if line.startswith("ci:")
    )
    assert "test" in ci.split("##")[0].split(":")[1].split()  # `make ci` runs them too
