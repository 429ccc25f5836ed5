"""Multi-process training: the train stage under torchrun (2 CPU processes, gloo).

`train.processes: 2` makes the stage run torchrun's agent in its own process; torchrun runs
the stage script again on each rank, each trains on its shard of every global minibatch and
rank 0 writes the outputs. The result must match single-process training on the same global
batches; whatever ends the stage ends every rank, and a stalled rank ends the run.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from conftest import REPO, error_line, git_env, make_split, run, stage_here
from mnist_pipeline.data.splits import save_split
from mnist_pipeline.learning.model_file import load_model

pytestmark = pytest.mark.slow


def run_stage(name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    script = str(REPO / "stages" / f"{name}.py")
    return run([sys.executable, script, *args], cwd, src=REPO / "src", timeout=300)


# Subprocess: torchrun starts the ranks (the one-process run is in this process).
@pytest.mark.parametrize("gradients", ["manual", "autograd"])
def test_two_processes_match_one(
    raw_dir: Path, tmp_path: Path, gradients: str, capsys: pytest.CaptureFixture[str]
) -> None:
    prepared = stage_here(capsys, "preprocess", "--params", str(REPO / "params.yaml"),
                          "--raw", str(raw_dir), "--out", "processed", cwd=tmp_path)  # fmt: skip
    assert prepared.returncode == 0, prepared.stderr
    outputs = {}
    for processes in (1, 2):
        raw = yaml.safe_load((REPO / "params.yaml").read_text())
        raw["train"].update(
            epochs=2, lr=0.5, batch_size=15, processes=processes, gradients=gradients
        )  # 200 = 13 * 15 + 5: uneven shards and a short last batch
        params = tmp_path / f"params{processes}.yaml"
        params.write_text(yaml.safe_dump(raw))
        out = tmp_path / f"p{processes}"
        args = ["--params", str(params), "--data", "processed", "--model"]
        args += [str(out / "model.safetensors"), "--history", str(out / "log.csv")]
        if processes == 1:
            assert stage_here(capsys, "train", *args, cwd=tmp_path).returncode == 0
        else:
            run_stage("train", *args, cwd=tmp_path)
        outputs[processes] = out
    one, two = (pd.read_csv(outputs[p] / "log.csv") for p in (1, 2))
    assert list(two.columns) == list(one.columns)
    assert (two["test_accuracy"] - one["test_accuracy"]).abs().max() <= 0.01
    pd.testing.assert_series_equal(two["train_loss"], one["train_loss"], atol=1e-4)
    m1, m2 = (load_model(outputs[p] / "model.safetensors")[0] for p in (1, 2))
    for (name, a), b in zip(m1.state_dict().items(), m2.state_dict().values(), strict=True):
        assert torch.allclose(a, b, atol=1e-5), name
    assert sorted(p.name for p in outputs[2].iterdir()) == sorted(
        p.name for p in outputs[1].iterdir()
    )


def processes_of(root: Path) -> list[int]:
    """Processes whose command line names ``root``: the stage and its ranks."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            if str(root).encode() in cmdline.read_bytes():
                pids.append(int(cmdline.parent.name))
    return pids


def start_train(root: Path, **train: object) -> subprocess.Popen[str]:
    """The train stage on 2 ranks in its own process group, beside an earlier model and log."""
    save_split(make_split(400, 1), root / "processed" / "train.safetensors")
    save_split(make_split(100, 2), root / "processed" / "test.safetensors")
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["train"].update(processes=2, hidden=[16], **train)
    (root / "params.yaml").write_text(yaml.safe_dump(raw))
    out = root / "out"
    out.mkdir()
    (out / "model.safetensors").write_bytes(b"the earlier model")
    (out / "log.csv").write_bytes(b"epoch,train_loss,test_accuracy\n1,0.5,0.5\n")
    return subprocess.Popen(
        [sys.executable, str(REPO / "stages" / "train.py"), "--params", str(root / "params.yaml"),
         "--data", str(root / "processed"), "--model", str(out / "model.safetensors"),
         "--history", str(out / "log.csv"), "--checkpoint", str(root / "ck" / "train.pt")],
        cwd=root, env={**git_env(), "PYTHONPATH": str(REPO / "src")},
        stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip


@pytest.fixture
def training(tmp_path: Path) -> Iterator[Path]:
    """``tmp_path`` for ``start_train``; whatever a failed test leaves running is killed."""
    yield tmp_path
    for pid in processes_of(tmp_path):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def wait_for_epoch(proc: subprocess.Popen[str], root: Path) -> dict[bytes, int]:
    """Until the first epoch is checkpointed (both ranks training); each rank's pid."""
    deadline = time.monotonic() + 240
    while not (root / "ck" / "train.pt").exists():
        assert proc.poll() is None and time.monotonic() < deadline, "training never started"
        time.sleep(0.2)
    ranks = {}
    for pid in processes_of(root):
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        ranks |= {var[5:]: pid for var in env if var.startswith(b"RANK=")}
    assert sorted(ranks) == [b"0", b"1"], "the ranks never started"
    return ranks


# Subprocess: SIGKILL to the stage's process group, torchrun's ranks outside it.
def test_sigkill_to_the_stage_group_ends_every_rank_and_changes_no_output(training: Path) -> None:
    proc = start_train(training, epochs=10_000)
    wait_for_epoch(proc, training)
    before = {p.name: p.read_bytes() for p in (training / "out").iterdir()}
    os.killpg(proc.pid, signal.SIGKILL)  # as on dvc repro's group: torchrun's ranks are not in it
    start = time.monotonic()
    while processes_of(training) and time.monotonic() < start + 10:
        time.sleep(0.05)
    print(f"SIGKILL to the stage's group: every rank gone in {time.monotonic() - start:.2f} s")
    assert processes_of(training) == [], "a rank outlived the stage"
    time.sleep(2)  # an orphaned rank would checkpoint or write here
    assert {p.name: p.read_bytes() for p in (training / "out").iterdir()} == before


# Subprocess: SIGSTOP on one of torchrun's ranks.
def test_a_stalled_rank_ends_the_run_naming_it(training: Path) -> None:
    proc = start_train(training, epochs=10_000, rank_timeout=5)
    ranks = wait_for_epoch(proc, training)
    os.kill(ranks[b"1"], signal.SIGSTOP)
    start = time.monotonic()
    _, stderr = proc.communicate(timeout=120)
    seconds = time.monotonic() - start
    print(f"SIGSTOP on a rank, rank_timeout 5 s: the stage ended after {seconds:.1f} s")
    result = subprocess.CompletedProcess(proc.args, proc.returncode, "", stderr)
    assert "rank 1 of 2 made no progress for train.rank_timeout=5 s" in error_line(result)
    assert seconds < 5 + 30 + 15  # the timeout, torchrun's grace before SIGKILL, the unwinding
    assert processes_of(training) == []
    assert (training / "out" / "model.safetensors").read_bytes() == b"the earlier model"


# Subprocess: every torchrun rank fails; the launcher's exit status and one line.
def test_an_error_on_every_rank_is_one_line(tmp_path: Path) -> None:
    proc = start_train(tmp_path, batch_size=1000)  # more than the 400 images: every rank fails
    _, stderr = proc.communicate(timeout=120)
    result = subprocess.CompletedProcess(proc.args, proc.returncode, "", stderr)
    assert "train.batch_size=1000 is larger than the training set (400 images)" in error_line(
        result
    )
    assert (tmp_path / "out" / "model.safetensors").read_bytes() == b"the earlier model"
