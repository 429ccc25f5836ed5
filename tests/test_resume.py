"""Resume after a kill: the train stage keeps its state after every epoch outside the
tracked outputs, and a rerun continues after the last complete epoch with the same bytes.

The slow test kills the real stage with SIGKILL at random moments of a multi-epoch run,
again and again, and compares every output with a run that was never killed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from conftest import REPO, git_env, write_idx_set, write_manifest
from mnist_pipeline.core.errors import PipelineError
from mnist_pipeline.data.splits import Split
from mnist_pipeline.learning.checkpoints import Checkpoint, read_state, run_key, write_state
from mnist_pipeline.learning.params import TrainParams
from mnist_pipeline.learning.training import EpochRecord, train

SETUPS = {
    "notebook": {},
    "mlp-momentum-cosine-best": dict(
        model="mlp", hidden=[16], momentum=0.9, val_fraction=0.2, keep="best",
        schedule="cosine", warmup=1, lr=0.1,
    ),
    "adam-autograd-step": dict(
        model="mlp", hidden=[8], optimizer="adam", gradients="autograd", lr=0.01,
        schedule="step", step_size=2, gamma=0.5, val_fraction=0.2, patience=2,
    ),
}  # fmt: skip


class Killed(Exception):
    """Stands in for SIGKILL in-process: raised after an epoch's checkpoint is saved."""


def weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def killed_after(
    epoch: int, params: TrainParams, train_split: Split, test_split: Split, checkpoint: Checkpoint
) -> None:
    """A run that dies right after ``epoch``, leaving ``checkpoint`` behind."""

    def die(record: EpochRecord) -> None:
        if record.epoch == epoch:
            raise Killed

    with pytest.raises(Killed):
        train(params, train_split, test_split, die, checkpoint)


@pytest.mark.parametrize("setup", list(SETUPS))
def test_resumed_run_equals_uninterrupted(
    setup: str, train_split: Split, test_split: Split, tmp_path: Path
) -> None:
    params = TrainParams(epochs=5, batch_size=20, **SETUPS[setup])
    whole = train(params, train_split, test_split)
    checkpoint = Checkpoint(tmp_path / "train.pt", "key")
    killed_after(3, params, train_split, test_split, checkpoint)
    assert checkpoint.path.is_file()
    resumed = train(params, train_split, test_split, None, checkpoint)
    assert resumed.first_epoch == 4
    assert len(resumed.seconds_per_epoch) == len(whole.history) - 3  # only the rest ran
    assert resumed.history == whole.history
    assert (resumed.shipped, resumed.stop_reason) == (whole.shipped, whole.stop_reason)
    shipped, again = weights(whole.model), weights(resumed.model)
    assert shipped.keys() == again.keys()
    for name, value in shipped.items():
        assert torch.equal(value, again[name]), name


def test_checkpoint_of_other_params_or_data_is_discarded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "train.safetensors"
    data.write_bytes(b"one")
    key = run_key(TrainParams(), [data])
    assert run_key(TrainParams(lr=0.02), [data]) != key
    data.write_bytes(b"two")
    assert run_key(TrainParams(), [data]) != key
    write_state({"history": [], "key": key}, tmp_path / "train.pt")
    other = Checkpoint(tmp_path / "train.pt", run_key(TrainParams(), [data]))
    with caplog.at_level(logging.INFO):
        assert other.restore({}, torch.Generator()) == []
    assert not other.path.exists()
    assert [r.getMessage() for r in caplog.records] == [
        f"discarding checkpoint {other.path}: it was made with other params, data or code"
    ]


def test_a_resumed_stage_discards_a_foreign_checkpoint(
    train_split: Split, test_split: Split, tmp_path: Path
) -> None:
    params = TrainParams(epochs=2, batch_size=20)
    write_state({"history": ["not this run's"], "key": "other"}, tmp_path / "train.pt")
    result = train(params, train_split, test_split, None, Checkpoint(tmp_path / "train.pt", "k"))
    assert result.first_epoch == 1
    assert [r.epoch for r in result.history] == [1, 2]


def flip_a_weight_bit(path: Path, state: dict[str, Any]) -> None:
    """One bit inside the first weight's bytes in the file; the rest, the key included, kept."""
    data = bytearray(path.read_bytes())
    at = data.index(next(iter(state["model"].values())).numpy().tobytes()) + 5
    data[at] ^= 0x10
    path.write_bytes(data)


def test_a_damaged_checkpoint_is_discarded_and_the_run_starts_over(
    train_split: Split,
    test_split: Split,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    params = TrainParams(epochs=3, batch_size=20, **SETUPS["mlp-momentum-cosine-best"])
    whole = train(params, train_split, test_split)
    checkpoint = Checkpoint(tmp_path / "train.pt", "key")
    killed_after(2, params, train_split, test_split, checkpoint)
    flip_a_weight_bit(checkpoint.path, read_state(checkpoint.path))
    with caplog.at_level(logging.WARNING):
        again = train(params, train_split, test_split, None, checkpoint)
    [warning] = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warning.startswith(f"discarding checkpoint {checkpoint.path}: ")
    assert "sha256 digest does not match its content" in warning
    assert warning.endswith("; training starts at epoch 1")
    assert again.first_epoch == 1 and again.history == whole.history
    shipped, fresh = weights(whole.model), weights(again.model)
    assert all(torch.equal(value, fresh[name]) for name, value in shipped.items())


def test_a_checkpoint_path_that_cannot_be_written_is_one_line_before_training(
    train_split: Split, test_split: Split, tmp_path: Path
) -> None:
    (tmp_path / "a-file").write_text("")
    for path, why in [(tmp_path, "is a directory"), (tmp_path / "a-file" / "train.pt",
                      f"{tmp_path / 'a-file'} is no writable folder")]:  # fmt: skip
        with pytest.raises(PipelineError, match=rf"^--checkpoint {path}: {why}; give a file"):
            train(TrainParams(epochs=1), train_split, test_split, None, Checkpoint(path, "k"))


# ------------------------------------------------------------------ SIGKILL on the stage

EPOCHS = 10
EPOCH_LINE = re.compile(r" epoch (\d+)/\d+: ")


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}


# Runs the stage with every epoch at least 0.2 s long (a sleep before each checkpoint), so
# that a kill a random fraction of an epoch after its log line lands inside training on a
# fast machine too. It changes no output.
SLOW_EPOCHS = """
import runpy, sys, time
from mnist_pipeline.learning import checkpoints
_save = checkpoints.Checkpoint.save
def save(self, *args):
    time.sleep(0.2)
    _save(self, *args)
checkpoints.Checkpoint.save = save
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def launch(cwd: Path, out: Path) -> subprocess.Popen[str]:
    wrapper = cwd / "slow_epochs.py"
    wrapper.write_text(SLOW_EPOCHS)
    command = [
        sys.executable, str(wrapper), str(REPO / "stages" / "train.py"), "--params", "params.yaml",
        "--data", "processed", "--model", str(out / "model.safetensors"),
        "--history", str(out / "train_log.csv"), "--checkpoint", "state/train.pt",
    ]  # fmt: skip
    env = git_env() | {"PYTHONPATH": str(REPO / "src")}
    return subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


# Subprocess: SIGKILL at random moments, then a resume from the checkpoint.
@pytest.mark.slow
def test_sigkill_at_random_moments_resumes_to_identical_bytes(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    write_idx_set(raw, n_train=300, n_test=60)
    write_manifest(raw, 300, 60)
    prep = [sys.executable, str(REPO / "stages" / "preprocess.py"), "--params",
            str(REPO / "params.yaml"), "--raw", str(raw), "--out", "processed"]  # fmt: skip
    subprocess.run(prep, cwd=tmp_path, env=git_env() | {"PYTHONPATH": str(REPO / "src")},
                   check=True, capture_output=True)  # fmt: skip
    settings = yaml.safe_load((REPO / "params.yaml").read_text())
    settings["train"].update(SETUPS["mlp-momentum-cosine-best"], epochs=EPOCHS, batch_size=10)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(settings))

    clean = tmp_path / "clean"
    assert launch(tmp_path, clean).wait(timeout=300) == 0
    expected = digests(clean)
    assert sorted(expected) == ["model.safetensors", "train_log.csv"]
    assert not (tmp_path / "state" / "train.pt").exists()  # removed on success

    out, rng, resume_at, kills = tmp_path / "out", random.Random(18), 1, 0
    while kills < 5:
        proc = launch(tmp_path, out)
        target = min(resume_at + rng.randint(0, 1), EPOCHS - 3)  # an epoch this run trains
        seen, last_line = resume_at - 1, time.monotonic()
        assert proc.stderr is not None
        for line in proc.stderr:
            if "resuming at epoch" in line:
                assert int(line.split("resuming at epoch ")[1].split()[0]) == resume_at
            if logged := EPOCH_LINE.search(line):
                seen, epoch_seconds = int(logged[1]), time.monotonic() - last_line
                last_line += epoch_seconds
                if seen >= target:  # somewhere inside the next epoch (or its checkpoint)
                    time.sleep(rng.uniform(0.0, min(epoch_seconds, 0.5)))
                    os.kill(proc.pid, signal.SIGKILL)
                    break
        proc.wait(timeout=60)
        proc.stderr.close()
        assert proc.returncode == -signal.SIGKILL, "the run ended before its kill"
        kills += 1
        assert not out.exists() or not any(out.iterdir()), list(out.iterdir())
        state = read_state(tmp_path / "state" / "train.pt")
        # At least the epochs logged before the kill are in the checkpoint (more if the run
        # went on while this test read its output), and not all of them.
        assert seen <= len(state["history"]) < EPOCHS
        resume_at = len(state["history"]) + 1
    final = launch(tmp_path, out)
    stdout, stderr = final.communicate(timeout=300)
    assert final.returncode == 0, stderr
    assert f"resuming at epoch {resume_at} of {EPOCHS}" in stderr
    trained = EPOCHS - resume_at + 1
    assert f"trained {trained} epoch(s) from epoch {resume_at};" in stdout
    assert digests(out) == expected
    assert not (tmp_path / "state" / "train.pt").exists()
