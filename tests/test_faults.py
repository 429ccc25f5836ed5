"""Bad inputs and faults, end to end: one clear line, a non-zero exit, no output left.

Each case lays out a scratch directory like the project (``params.yaml``, ``data/raw``,
``data/processed``, ``models``, ...), plants one fault and runs one stage script's
``main(argv)`` in this process, through ``entry_point`` as the script's ``__main__`` does, with
exactly the arguments ``dvc.yaml`` gives it. It must exit 2 with ONE ``error:`` line that
says what is wrong, where (file, key, value) and how to fix it, with no traceback, and
leave none of the stage's outputs (nor a ``.*.tmp`` file) behind.

The DVC cases (marked ``slow``) run ``dvc repro`` in a copy of the reproduced project: a
stage that fails leaves ``dvc.lock`` and the outputs untouched, and a ``dvc repro`` killed
with SIGKILL in the middle of ``train`` is picked up cleanly by the next one, with a
consistent lock.

    .venv/bin/python -m pytest tests/test_faults.py [-m "not slow"]
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import gc
import gzip
import json
import os
import pickle
import re
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from conftest import (
    REPO,
    Finished,
    error_line,
    git_env,
    make_split,
    run,
    set_params,
    stage,
    stage_here,
    synthetic_arrays,
    write_idx_set,
    write_manifest,
)
from mnist_pipeline.core.errors import PipelineError
from mnist_pipeline.core.io import file_digest, write_json
from mnist_pipeline.data.idx import write_idx
from mnist_pipeline.data.splits import save_split
from mnist_pipeline.data.tensors import save_tensors
from mnist_pipeline.learning.losses import Head
from mnist_pipeline.learning.model_file import save_model
from mnist_pipeline.learning.models import ModelSpec, build_model

DVC_STAGES = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
DEFAULT_PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())


def stage_args(name: str) -> list[str]:
    """The stage's arguments exactly as dvc.yaml's ``cmd`` passes them."""
    tokens = shlex.split(DVC_STAGES[name]["cmd"])
    return tokens[tokens.index(f"stages/{name}.py") + 1 :]


def stage_outputs(name: str) -> list[str]:
    """Paths the stage declares as outs, metrics and plots."""
    paths = []
    for kind in ("outs", "metrics", "plots"):
        for entry in DVC_STAGES[name].get(kind, []):
            paths.append(entry if isinstance(entry, str) else next(iter(entry)))
    return paths


# Root ignores file permissions through CAP_DAC_OVERRIDE; setpriv runs the stage without
# it (and without CAP_DAC_READ_SEARCH), so a read-only directory stops root too.
AS_NON_ROOT = [
    "setpriv",
    "--bounding-set=-dac_override,-dac_read_search",
    "--inh-caps=-dac_override,-dac_read_search",
    "--",
]


@functools.cache
def obeys_permissions() -> bool:
    """Whether a case that needs permissions enforced can run here."""
    if os.geteuid() != 0:
        return True
    if shutil.which("setpriv") is None:
        return False
    return subprocess.run([*AS_NON_ROOT, "true"], capture_output=True).returncode == 0


@dataclass
class Scratch:
    """A directory laid out like the project, for one fault."""

    root: Path
    planted: set[str] = field(default_factory=set)  # outputs the fault itself put there

    def params(self, **sections: dict[str, object]) -> None:
        raw = yaml.safe_load(yaml.safe_dump(DEFAULT_PARAMS))
        for section, values in sections.items():
            raw[section].update(values)
        (self.root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))

    def raw(self, **kwargs: int) -> Path:
        """A download-stage output: four synthetic IDX files (200/50) and the manifest."""
        raw = write_idx_set(self.root / "data" / "raw", **kwargs)
        write_manifest(raw)
        return raw

    def processed(self, n_train: int = 200) -> Path:
        out = self.root / "data" / "processed"
        save_split(make_split(n_train, 1), out / "train.safetensors")
        save_split(make_split(50, 2), out / "test.safetensors")
        return out

    def model(self, spec: ModelSpec, claimed: ModelSpec | None = None) -> Path:
        """A saved model of ``spec`` whose metadata says it is ``claimed``."""
        path = self.root / "models" / "model.safetensors"
        save_model(build_model(spec), claimed or spec, path, "mse", Head(), ())
        return path

    def mirror(self, gz: bool = True) -> Path:
        path = write_idx_set(self.root / "mirror", gz=gz)
        return path.resolve()


@dataclass(frozen=True)
class Case:
    id: str
    stage: str
    expected: tuple[str, ...]  # fragments of the one error line: what, where, how to fix
    setup: Callable[[Scratch], None]
    obey_permissions: bool = False  # as root: without CAP_DAC_OVERRIDE (see AS_NON_ROOT)


class Planted:
    """Unpickling this creates a marker file: proof that a pickle ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[Path, str]]:
        return (Path.write_text, (self.marker, "pickle ran code"))


MARKER = "PICKLE_RAN"


def plant_pickle(path: Path, marker: Path, protocol: int) -> None:
    """A pickle at ``path`` that would create ``marker`` if anything unpickled it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(Planted(marker.resolve()), protocol=protocol))


# ------------------------------------------------------------------------ the faults


def corrupt_gzip(s: Scratch) -> None:
    mirror = s.mirror()
    (mirror / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b" + bytes(range(60)))
    s.params(data={"source": "mirror", "mirror": str(mirror)})


def truncated_idx(s: Scratch) -> None:
    mirror = s.mirror(gz=False)
    path = mirror / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-5])
    s.params(data={"source": "mirror", "mirror": str(mirror)})


def wrong_magic(s: Scratch) -> None:
    mirror = s.mirror(gz=False)
    path = mirror / "train-labels-idx1-ubyte"
    data = bytearray(path.read_bytes())
    data[2] = 0x42  # type code 0x42: no such IDX type
    path.write_bytes(bytes(data))
    s.params(data={"source": "mirror", "mirror": str(mirror)})


def checksum_mismatch(s: Scratch) -> None:
    # Synthetic digits where Fashion-MNIST (known sha256) should be: other data.
    s.params(data={"dataset": "fashion-mnist", "source": "mirror", "mirror": str(s.mirror())})


def mirror_missing_file(s: Scratch) -> None:
    mirror = s.mirror()
    (mirror / "t10k-labels-idx1-ubyte.gz").unlink()
    s.params(data={"source": "mirror", "mirror": str(mirror)})


def mirror_dir_missing(s: Scratch) -> None:
    s.params(data={"source": "mirror", "mirror": str(s.root / "no-such-mirror")})


def params_changes(**sections: dict[str, object]) -> Callable[[Scratch], None]:
    return lambda s: s.params(**sections)


def params_text(transform: Callable[[str], str]) -> Callable[[Scratch], None]:
    def setup(s: Scratch) -> None:
        s.params()
        path = s.root / "params.yaml"
        path.write_text(transform(path.read_text()))

    return setup


def params_without(section: str) -> Callable[[Scratch], None]:
    def setup(s: Scratch) -> None:
        s.params()
        raw = yaml.safe_load((s.root / "params.yaml").read_text())
        del raw[section]
        (s.root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))

    return setup


def read_only_output_dir(s: Scratch) -> None:
    s.params(data={"source": "embedded"})
    (s.root / "data").mkdir()
    (s.root / "data").chmod(0o555)


def output_parent_is_a_file(s: Scratch) -> None:
    s.params(data={"source": "embedded"})
    (s.root / "data").write_text("a file where the data directory belongs\n")
    s.planted.add("data")


def count_mismatch(s: Scratch) -> None:
    s.params()
    labels = synthetic_arrays(50, 2)[1][:49]
    write_idx(labels, s.raw() / "t10k-labels-idx1-ubyte")


def label_out_of_range(s: Scratch) -> None:
    s.params()
    labels = synthetic_arrays(50, 2)[1]
    labels[7] = 10
    write_idx(labels, s.raw() / "t10k-labels-idx1-ubyte")


def wrong_image_size(s: Scratch) -> None:
    s.params()
    write_idx(np.zeros((50, 32, 32), np.uint8), s.raw() / "t10k-images-idx3-ubyte")


def empty_split(s: Scratch) -> None:
    s.params()
    raw = s.raw()
    write_idx(np.zeros((0, 28, 28), np.uint8), raw / "t10k-images-idx3-ubyte")
    write_idx(np.zeros((0,), np.uint8), raw / "t10k-labels-idx1-ubyte")


def corrupt_manifest(s: Scratch) -> None:
    s.params()
    (s.raw() / "manifest.json").write_text('{"dataset": "mnist",')


def diverging_loss(s: Scratch) -> None:
    s.params(train={"loss": "cross_entropy", "lr": 1e38, "epochs": 2})
    s.processed()


def batch_larger_than_data(s: Scratch) -> None:
    s.params(train={"batch_size": 500, "epochs": 1})
    s.processed()


def processed_wrong_shape(s: Scratch) -> None:
    s.params(train={"epochs": 1})
    out = s.processed()
    split = make_split(200, 1)
    meta = {"dataset": "mnist", "source": "synthetic", "classes": json.dumps(split.classes)}
    images = split.images[:, :100].copy()  # [200, 100], not [200, 784]
    save_tensors({"images": images, "labels": split.labels}, out / "train.safetensors", meta)


def pickle_as_processed_split(s: Scratch) -> None:
    s.params(train={"epochs": 1})
    plant_pickle(s.processed() / "train.safetensors", s.root / MARKER, protocol=4)


def model_other_architecture(s: Scratch) -> None:
    s.params()
    s.processed()
    # mlp weights under a "linear" description: the file lies about its architecture
    s.model(ModelSpec("mlp", 784, 10, (32,), "sigmoid"), claimed=ModelSpec("linear", 784, 10))


def pickle_as_model(protocol: int) -> Callable[[Scratch], None]:
    def setup(s: Scratch) -> None:
        s.params()
        s.processed()
        plant_pickle(s.root / "models" / "model.safetensors", s.root / MARKER, protocol)

    return setup


def metrics_path_is_a_directory(s: Scratch) -> None:
    s.params()
    s.processed()
    s.model(ModelSpec("linear", 784, 10))
    (s.root / "metrics" / "eval.json").mkdir(parents=True)
    s.planted.add("metrics/eval.json")


def inputs_only(*kinds: str) -> Callable[[Scratch], None]:
    def setup(s: Scratch) -> None:
        s.params()
        if "processed" in kinds:
            s.processed()

    return setup


CASES: list[Case] = [
    # download: sources and their files
    Case(
        "corrupt-gzip",
        "download",
        ("mirror/train-images-idx3-ubyte.gz: corrupt or truncated gzip data", "fetch it again"),
        corrupt_gzip,
    ),
    Case(
        "truncated-idx",
        "download",
        (
            "mirror/train-images-idx3-ubyte: IDX data truncated",
            "[200, 28, 28]",
            "fetch the file again",
        ),
        truncated_idx,
    ),
    Case(
        "wrong-magic",
        "download",
        ("mirror/train-labels-idx1-ubyte: bad IDX magic number 0x00004201", "fetch the file again"),
        wrong_magic,
    ),
    Case(
        "checksum-mismatch",
        "download",
        (
            "mirror/train-images-idx3-ubyte.gz: checksum mismatch",
            "fashion-mnist",
            "use another data.mirror",
        ),
        checksum_mismatch,
    ),
    Case(
        "mirror-missing-file",
        "download",
        ("data.mirror=", "missing t10k-labels-idx1-ubyte.gz", "must hold all four files"),
        mirror_missing_file,
    ),
    Case(
        "mirror-dir-missing",
        "download",
        ("no-such-mirror: no such directory", "point it at a folder"),
        mirror_dir_missing,
    ),
    Case(
        "unknown-dataset",
        "download",
        ("params.yaml: data.dataset: 'cifar10' is not allowed", "choose one of: mnist"),
        params_changes(data={"dataset": "cifar10"}),
    ),
    Case(
        "embedded-not-mnist",
        "download",
        (
            "data.source=embedded only has MNIST digits, not data.dataset=kmnist",
            "use data.source=mirror",
        ),
        params_changes(data={"dataset": "kmnist", "source": "embedded"}),
    ),
    # params.yaml: every kind of mistake, caught by whichever stage reads it first
    Case(
        "params-unknown-key",
        "download",
        ("params.yaml: data.sourse: unknown key; did you mean 'data.source'?",),
        params_changes(data={"sourse": "embedded"}),
    ),
    Case(
        "params-wrong-type",
        "preprocess",
        ("params.yaml: data.split_seed: expected an integer, got 'ten'",),
        params_changes(data={"split_seed": "ten"}),
    ),
    Case(
        "params-out-of-range",
        "train",
        ("params.yaml: train.batch_size: 0 is out of range (must be >= 1)",),
        params_changes(train={"batch_size": 0}),
    ),
    Case(
        "params-bad-choice",
        "evaluate",
        ("params.yaml: train.loss: 'mae' is not allowed (choose one of: mse, cross_entropy)",),
        params_changes(train={"loss": "mae"}),
    ),
    Case(
        "params-missing-section",
        "report",
        ("params.yaml: report: missing section; add 'report:'",),
        params_without("report"),
    ),
    Case(
        "params-unknown-section",
        "download",
        ("params.yaml: trian: unknown section; did you mean 'train'?",),
        params_text(lambda t: t + "trian:\n  lr: 0.1\n"),
    ),
    Case(
        "params-conflicting-keys",
        "train",
        (
            "params.yaml: train.momentum: 0.9 applies to optimizer sgd only, not 'adam'",
            "set it to 0",
        ),
        params_changes(train={"optimizer": "adam", "momentum": 0.9}),
    ),
    Case(
        "params-invalid-yaml",
        "download",
        ("params.yaml: not valid YAML at line", "fix the syntax"),
        params_text(lambda t: t + "train: [oops\n"),
    ),
    # where outputs go
    Case(
        "read-only-output-dir",
        "download",
        ("cannot write data/raw: Permission denied", "fix the folder"),
        read_only_output_dir,
        obey_permissions=True,
    ),
    Case(
        "output-parent-is-a-file",
        "download",
        (
            "cannot write data/raw: data is a file, not a directory",
            "or choose another path",
        ),
        output_parent_is_a_file,
    ),
    Case(
        "output-is-a-directory",
        "evaluate",
        ("cannot write metrics/eval.json: a directory is in the way", "remove it"),
        metrics_path_is_a_directory,
    ),
    # preprocess: raw files that do not make a dataset
    Case(
        "count-mismatch",
        "preprocess",
        (
            "data/raw/t10k-images-idx3-ubyte + t10k-labels-idx1-ubyte: 50 images but 49 labels",
            "fetch both again",
        ),
        count_mismatch,
    ),
    Case(
        "label-out-of-range",
        "preprocess",
        (
            "t10k-labels-idx1-ubyte: label 10 at index 7 is out of range 0..9 for mnist",
            "check data.dataset",
        ),
        label_out_of_range,
    ),
    Case(
        "wrong-image-size",
        "preprocess",
        (
            "t10k-labels-idx1-ubyte: images have shape [50, 32, 32], expected [N, 28, 28]",
            "check data.dataset",
        ),
        wrong_image_size,
    ),
    Case(
        "empty-split",
        "preprocess",
        (
            "t10k-images-idx3-ubyte + t10k-labels-idx1-ubyte: the split is empty",
            "fetch the data again",
        ),
        empty_split,
    ),
    Case(
        "corrupt-manifest",
        "preprocess",
        ("data/raw/manifest.json: not valid JSON", "rerun the stage that writes it"),
        corrupt_manifest,
    ),
    Case(
        "missing-input-path",
        "preprocess",
        ("data/raw/manifest.json: file not found; run the stage that writes it",),
        inputs_only(),
    ),
    # train
    Case(
        "diverging-loss",
        "train",
        ("train loss became nan at epoch 1, step", "training diverged; lower train.lr"),
        diverging_loss,
    ),
    Case(
        "batch-larger-than-data",
        "train",
        (
            "train.batch_size=500 is larger than the training set (200 images)",
            "lower train.batch_size",
        ),
        batch_larger_than_data,
    ),
    Case(
        "processed-wrong-shape",
        "train",
        (
            "train.safetensors: images are float32 [200, 100], expected float32 [N, 784]",
            "rerun the preprocess stage",
        ),
        processed_wrong_shape,
    ),
    Case(
        "pickle-as-processed-split",
        "train",
        (
            "data/processed/train.safetensors: not a readable safetensors file",
            "rerun the stage that writes it",
        ),
        pickle_as_processed_split,
    ),
    # evaluate
    Case(
        "model-other-architecture",
        "evaluate",
        (
            "models/model.safetensors: weights do not fit the linear architecture",
            "rerun the train stage",
        ),
        model_other_architecture,
    ),
    Case(
        "pickle-as-model",
        "evaluate",
        (
            "models/model.safetensors: not a readable safetensors file",
            "rerun the stage that writes it",
        ),
        pickle_as_model(protocol=4),
    ),
    Case(
        "protocol-0-pickle-as-model",
        "evaluate",
        (
            "models/model.safetensors: not a readable safetensors file",
            "rerun the stage that writes it",
        ),
        pickle_as_model(protocol=0),
    ),
]


@pytest.fixture
def scratch(tmp_path: Path) -> Iterator[Scratch]:
    """An empty scratch directory; afterwards a tmpfs on ``data/`` is unmounted and a
    read-only ``data/`` made writable again, so pytest can remove them."""
    yield Scratch(tmp_path)
    data = tmp_path / "data"
    if data.is_mount():
        subprocess.run(["umount", str(data)], check=False)
    if data.is_dir():
        data.chmod(0o755)


def run_case(
    case: Case,
    scratch: Scratch,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> Finished:
    """The case's stage with dvc.yaml's arguments, in the scratch directory."""
    if case.obey_permissions and os.geteuid() == 0:
        # Subprocess: only a child process can run as root without CAP_DAC_OVERRIDE.
        return stage(case.stage, *stage_args(case.stage), cwd=scratch.root, prefix=AS_NON_ROOT)
    return stage_here(capsys, case.stage, *stage_args(case.stage), cwd=scratch.root)


def leftovers(scratch: Scratch, stage_name: str) -> list[str]:
    """Outputs of the stage, and temp files, that exist in the scratch directory."""
    found = [
        path
        for path in stage_outputs(stage_name)
        if (scratch.root / path).exists() and path not in scratch.planted
    ]
    found += [str(p.relative_to(scratch.root)) for p in scratch.root.rglob(".*.tmp")]
    return found


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_fault_is_one_clear_line_and_leaves_no_output(
    case: Case,
    scratch: Scratch,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if case.obey_permissions and not obeys_permissions():
        pytest.skip("running as root without setpriv: permissions are not enforced")
    case.setup(scratch)
    assert_failed_cleanly(case, scratch, run_case(case, scratch, capsys, monkeypatch))


def assert_failed_cleanly(case: Case, scratch: Scratch, result: Finished) -> None:
    """Exit 2 with one line holding every expected fragment; no output, no temp file."""
    line = error_line(result)  # exit 2, exactly one error line, no traceback
    for fragment in case.expected:
        assert fragment in line, line
    assert leftovers(scratch, case.stage) == []
    assert not (scratch.root / MARKER).exists(), "a planted pickle was executed"
    for planted in scratch.planted:  # what was in the way is left alone
        assert (scratch.root / planted).exists()


def test_planted_pickles_would_run_code(tmp_path: Path) -> None:
    """The payloads are live: unpickling one does create the marker (so its absence counts)."""
    for protocol in (0, 4):
        path, marker = tmp_path / f"{protocol}.safetensors", tmp_path / f"{protocol}.marker"
        plant_pickle(path, marker, protocol)
        pickle.loads(path.read_bytes())  # on purpose, here only: proves the payload is live
        assert marker.exists()


# ------------------------------------------------------------------------------ DVC


# Subprocess: `dvc repro` itself is under test (its lock, its report of the failed stage).
@pytest.mark.slow
def test_dvc_repro_with_bad_params_stops_with_one_line_and_keeps_the_lock(
    reproduced_copy: Path,
) -> None:
    project = reproduced_copy
    set_params(project, train={"lrr": 0.1})
    lock = (project / "dvc.lock").read_text()
    before = tracked_outputs(project)
    result = run(["dvc", "repro"], project, check=False)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    (ours,) = [line for line in output.splitlines() if line.startswith("error: ")]
    assert ours.startswith("error: params.yaml: train.lrr: unknown key; did you mean 'train.lr'?")
    # Each stage checks its own section: the train stage stops, before any output of its own.
    assert "failed to reproduce 'train'" in output and "Traceback" not in output
    assert (project / "dvc.lock").read_text() == lock
    assert tracked_outputs(project) == before


def tracked_outputs(project: Path) -> dict[str, bytes]:
    """Every file under the folders the stages write, and its bytes."""
    return {
        str(path.relative_to(project)): path.read_bytes()
        for top in ("data", "models", "metrics", "reports")
        for path in sorted((project / top).rglob("*"))
        if path.is_file()
    }


def lock_outs(project: Path) -> dict[str, str]:
    """``path -> md5`` of every output dvc.lock records."""
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    return {
        out["path"]: out["md5"] for spec in lock["stages"].values() for out in spec.get("outs", [])
    }


# Subprocess: a SIGKILL to `dvc repro`'s process group mid-train, then `dvc repro` again.
@pytest.mark.slow
def test_sigkill_during_train_then_repro_reruns_it_cleanly(reproduced_copy: Path) -> None:
    project = reproduced_copy
    before = tracked_outputs(project)
    epochs = 6
    set_params(project, train={"epochs": epochs})
    proc = subprocess.Popen(
        ["dvc", "repro"],
        cwd=project,
        env=git_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: dvc, the shell and the stage
    )
    lines: list[str] = []

    def read_output() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)

    reader = threading.Thread(target=read_output, daemon=True)
    reader.start()
    deadline = time.monotonic() + 120
    train_started = None
    while True:
        text = "".join(lines)
        assert proc.poll() is None, f"dvc repro ended before it could be killed:\n{text}"
        assert time.monotonic() < deadline, f"train never got going:\n{text}"
        if train_started is None and "Running stage 'train'" in text:
            train_started = time.monotonic()
        # In the middle of training: its third epoch logged, or 5 s into the stage.
        if f"epoch 3/{epochs}" in text or (train_started and time.monotonic() > train_started + 5):
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    reader.join(timeout=30)

    # The kill changed no output, left no temp file, and no lock entry claiming the new params.
    assert tracked_outputs(project) == before
    assert not list(project.rglob(".*.tmp"))
    locked = yaml.safe_load((project / "dvc.lock").read_text())["stages"]["train"]
    assert locked["params"]["params.yaml"]["train"]["epochs"] != epochs
    assert "train" in yaml.safe_load(run(["dvc", "status", "--json"], project).stdout)

    rerun = run(["dvc", "repro"], project)
    assert "Stage 'download' didn't change, skipping" in rerun.stdout
    assert "Running stage 'train'" in rerun.stdout
    assert run(["dvc", "status", "--json"], project).stdout.strip() == "{}"
    lock = (project / "dvc.lock").read_text()
    assert yaml.safe_load(lock)["stages"]["train"]["params"]["params.yaml"]["train"]["epochs"] == (
        epochs
    )
    for path, md5 in lock_outs(project).items():
        if (project / path).is_file():  # directories are hashed by their listing
            assert file_digest(project / path, "md5") == md5, path

    # A second repro after the interrupted one: nothing to do, the lock stays as it is.
    again = run(["dvc", "repro"], project)
    assert "Running stage" not in again.stdout
    assert (project / "dvc.lock").read_text() == lock


def test_cases_cover_the_brief() -> None:
    """At least 25 distinct end-to-end faults, across every stage."""
    assert len(CASES) >= 25 and len({c.id for c in CASES}) == len(CASES)
    assert {c.stage for c in CASES} == set(DVC_STAGES)


# ------------------------------------------------ params values that crashed a stage once


PARAMS_VALUE_CASES = [
    Case(
        "lr-300-digits",
        "train",
        ("params.yaml: train.lr: 1e+299 is out of range (must be <= 1e+38)",),
        params_changes(train={"lr": 10**299}),
    ),
    Case(
        "seed-10e23",
        "train",
        ("params.yaml: train.seed: a 24-digit integer is out of range (must be <= 4294967295)",),
        params_changes(train={"seed": 10**23}),
    ),
    Case(
        "seed-2e64",
        "train",
        ("params.yaml: train.seed: a 20-digit integer is out of range",),
        params_changes(train={"seed": 2**64 - 1}),
    ),
    Case(
        "split-seed-2e32",
        "download",
        ("params.yaml: data.split_seed: 4294967296 is out of range (must be <= 4294967295)",),
        params_changes(data={"source": "embedded", "split_seed": 2**32}),
    ),
    Case(
        "huge-hidden-layer",
        "train",
        ("params.yaml: train.hidden[0]: 100000000 is out of range (must be <= 1000000)",),
        params_changes(train={"model": "mlp", "hidden": [100_000_000]}),
    ),
    Case(
        "hidden-layers-over-memory",
        "train",
        ("params.yaml: train.hidden: [100000, 1000]", "1.5 GB memory budget; use smaller layers"),
        params_changes(train={"model": "mlp", "hidden": [100_000, 1000]}),
    ),
    Case(
        "cnn-too-many-blocks",
        "train",
        (
            "params.yaml: train.channels: [6, 16, 32, 64, 128, 256] is 6 conv blocks",
            "(28 -> 14 -> 7 -> 3 -> 1 -> 0 -> 0); use at most 4 entries",
        ),
        params_changes(
            train={"model": "cnn", "gradients": "autograd", "channels": [6, 16, 32, 64, 128, 256]}
        ),
    ),
]


@pytest.mark.parametrize("case", PARAMS_VALUE_CASES, ids=[c.id for c in PARAMS_VALUE_CASES])
def test_params_value_is_one_line_before_any_work(
    case: Case, scratch: Scratch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Values that once crashed deep inside torch or sklearn stop at the params check."""
    scratch.processed()  # the stage's inputs are all there: only params can stop it
    case.setup(scratch)
    line = error_line(stage_here(capsys, case.stage, *stage_args(case.stage), cwd=scratch.root))
    for fragment in case.expected:
        assert fragment in line, line
    assert leftovers(scratch, case.stage) == []


# ======================================================== hardening (issue 13): more faults
#
# The adversarial pass of issue 13: inputs that once exhausted memory or disk, hung, changed
# tracked files or died with a traceback. Each case also checks the README's 1.5 GB budget
# against the peak RSS of this process while its stage ran (pytest's own memory included,
# so the bound is stricter than on the stage alone). Train cases start with the training
# log of an earlier run, which must come out byte-identical: a failed train stage changes
# no tracked file.

RSS_BUDGET = int(1.5 * 2**30)
LIVE_BEFORE = {  # the live training log as an earlier successful run left it
    "metrics/train_log.csv": "epoch,train_loss,test_accuracy\n1,0.9,0.5\n2,0.8,0.6\n",
}


def vm_kib(field: str) -> int:
    """A ``Vm*`` line of this process's /proc status, in KiB."""
    status = Path("/proc/self/status").read_text()
    return int(re.search(rf"{field}:\s+(\d+) kB", status).group(1))


@functools.cache
def fresh_stage_rss() -> int:
    """The RSS (bytes) of a fresh interpreter that has imported the five stage scripts (torch
    included): where a stage that DVC runs starts."""
    code = (
        "import importlib.util as u, re, sys\n"
        "for name in ('download', 'preprocess', 'train', 'evaluate', 'report'):\n"
        "    spec = u.spec_from_file_location(name, f'{sys.argv[1]}/stages/{name}.py')\n"
        "    spec.loader.exec_module(u.module_from_spec(spec))\n"
        "print(re.search(r'VmHWM:\\s+(\\d+) kB', open('/proc/self/status').read()).group(1))"
    )
    # Subprocess: a fresh interpreter's footprint is what is measured.
    done = run([sys.executable, "-c", code, str(REPO)], REPO, src=REPO / "src")
    return int(done.stdout) * 1024


@contextlib.contextmanager
def peak_rss() -> Iterator[list[int]]:
    """Yields a list that holds, afterwards, the peak RSS (bytes) that the block's work would
    reach as a stage process of its own: ``fresh_stage_rss()`` plus this process's growth in
    the block (its high-water mark VmHWM, reset on entry through Linux's clear_refs after
    the freed heap went back to the system)."""
    start = fresh_stage_rss()
    gc.collect()
    ctypes.CDLL(None).malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")
    before = vm_kib("VmHWM")
    peak: list[int] = []
    yield peak
    peak.append(start + (vm_kib("VmHWM") - before) * 1024)


def oom_at_epoch_2(monkeypatch: pytest.MonkeyPatch) -> None:
    """The second epoch's scoring runs out of memory, after the log has taken the first."""
    import mnist_pipeline.learning.training as training

    calls, predict = [], training.predict_logits

    def predict_then_oom(*args: object, **kwargs: object) -> torch.Tensor:
        calls.append(1)
        if len(calls) == 2:
            raise torch.OutOfMemoryError("simulated: tried to allocate 20.00 GiB")
        return predict(*args, **kwargs)

    monkeypatch.setattr(training, "predict_logits", predict_then_oom)


@dataclass(frozen=True)
class HardCase(Case):
    patch: Callable[[pytest.MonkeyPatch], None] | None = None  # applied before the stage
    needs_root: bool = False  # mounts a small tmpfs (disk-full cases)


def idx_bytes(dtype: str, shape: tuple[int, ...], payload: bytes) -> bytes:
    codes = {"u1": 0x08, ">i4": 0x0C, ">f4": 0x0D}
    return (
        struct.pack(">HBB", 0, codes[dtype], len(shape))
        + struct.pack(f">{len(shape)}I", *shape)
        + payload
    )


def idx_mirror_with(name: str, content: bytes, dataset: str = "idx") -> Callable[[Scratch], None]:
    """A raw synthetic mirror where ``name`` holds ``content`` instead."""

    def setup(s: Scratch) -> None:
        mirror = s.mirror(gz=False)
        (mirror / name).write_bytes(content)
        s.params(data={"dataset": dataset, "source": "mirror", "mirror": str(mirror)})

    return setup


def labels_of(dtype: str, bad_value: float, index: int = 7) -> bytes:
    labels = synthetic_arrays(50, 2)[1].astype(dtype)
    labels[index] = bad_value
    return idx_bytes(dtype, labels.shape, labels.tobytes())


def gzip_bomb(s: Scratch) -> None:
    """A ~2 MB .gz that inflates to 2 GiB: an IDX header for 200 images, then zeros.

    gzip allows concatenated members, so one 64 MiB member of zeros, written 32 times,
    makes the bomb in well under a second.
    """
    mirror = s.mirror()
    zeros = gzip.compress(bytes(64 * 2**20), compresslevel=9)
    with open(mirror / "train-images-idx3-ubyte.gz", "wb") as out:
        out.write(gzip.compress(idx_bytes("u1", (200, 28, 28), b"")))
        for _ in range(32):  # 32 x 64 MiB = 2 GiB inflated
            out.write(zeros)
    s.params(data={"source": "mirror", "mirror": str(mirror), "verify": False})


def other_dataset_than_declared(s: Scratch) -> None:
    """Fashion-MNIST (Debian's, when installed; else synthetic) under data.dataset: mnist."""
    real = Path("/usr/share/datasets/fashion-mnist")
    mirror = real if real.is_dir() else s.mirror()
    s.params(data={"dataset": "mnist", "source": "mirror", "mirror": str(mirror)})


def small_disk(size: str, fill: Callable[[Scratch], None]) -> Callable[[Scratch], None]:
    """``data/`` on a tmpfs of ``size`` (unmounted by the fixture), then ``fill``."""

    def setup(s: Scratch) -> None:
        (s.root / "data").mkdir()
        subprocess.run(  # mount(8): the standard library has no mount call
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(s.root / "data")],
            check=True,
        )
        fill(s)

    return setup


def model_with(
    tensors: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] = dict,
    spec: object = None,
    loss: str = "mse",
) -> Callable[[Scratch], None]:
    """A linear model whose tensors (and metadata) are edited after training."""

    def setup(s: Scratch) -> None:
        s.params()
        s.processed()
        model = build_model(ModelSpec("linear", 784, 10))
        described = ModelSpec("linear", 784, 10).to_json() if spec is None else json.dumps(spec)
        meta = {"spec": described, "loss": loss, "output": "softmax"}
        weights = tensors(dict(model.state_dict()))
        save_tensors(weights, s.root / "models" / "model.safetensors", meta)

    return setup


def params_bytes(content: bytes) -> Callable[[Scratch], None]:
    def setup(s: Scratch) -> None:
        (s.root / "params.yaml").write_bytes(content)

    return setup


def params_is_a_directory(s: Scratch) -> None:
    (s.root / "params.yaml").mkdir()
    s.planted.add("params.yaml")


def report_inputs(s: Scratch) -> None:
    """Everything the report stage reads, as the stages before it would write it."""
    from mnist_pipeline.evaluation.evaluate import evaluate

    s.params()
    write_manifest(s.root / "data" / "processed")  # preprocess passes it on
    split = make_split(50, 2)
    save_split(split, s.root / "data" / "processed" / "test.safetensors")
    result = evaluate(
        build_model(ModelSpec("linear", 784, 10)), ModelSpec("linear", 784, 10), split
    )
    write_json(result.metrics.as_json(), s.root / "metrics" / "eval.json")
    result.predictions.to_csv(s.root / "metrics" / "predictions.csv", index=False)
    (s.root / "metrics" / "train_log.csv").write_text(
        "epoch,train_loss,test_accuracy\n1,0.9,0.5\n2,0.8,0.6\n"
    )


def edited(path: str, edit: Callable[[str], str]) -> Callable[[Scratch], None]:
    """The report's inputs, with the file ``path`` edited by hand."""

    def setup(s: Scratch) -> None:
        report_inputs(s)
        target = s.root / path
        target.write_text(edit(target.read_text()))

    return setup


def edited_json(
    path: str, edit: Callable[[dict[str, object]], object]
) -> Callable[[Scratch], None]:
    return edited(path, lambda text: json.dumps(edit(json.loads(text))))


def without(key: str) -> Callable[[dict[str, object]], dict[str, object]]:
    return lambda raw: {k: v for k, v in raw.items() if k != key}


def first_line_then(rows: Callable[[list[str]], list[str]]) -> Callable[[str], str]:
    """A CSV edit: keep the header, transform the data rows."""

    def edit(text: str) -> str:
        header, *body = text.splitlines()
        return "\n".join([header, *rows(body)]) + "\n"

    return edit


def with_previous_log(setup: Callable[[Scratch], None]) -> Callable[[Scratch], None]:
    """``setup``, plus the training log an earlier run left (it must survive)."""

    def plant(s: Scratch) -> None:
        setup(s)
        for path, text in LIVE_BEFORE.items():
            (s.root / path).parent.mkdir(parents=True, exist_ok=True)
            (s.root / path).write_text(text)
            s.planted.add(path)

    return plant


FASHION_AS_MNIST = ("checksum mismatch", "check data.dataset", "data.verify: false")
HARD_CASES: list[HardCase] = [
    # download: resources bounded by what the header declares
    HardCase(
        "gzip-bomb",
        "download",
        ("train-images-idx3-ubyte.gz: IDX data has trailing bytes", "[200, 28, 28]"),
        gzip_bomb,
    ),
    HardCase(
        "idx-size-product-overflow",
        "download",
        (
            "train-images-idx3-ubyte: IDX header declares shape [2147483648, 2147483648, 4]",
            "over the 160 MiB a dataset's four files may hold together",
            "fetch the right file",
        ),
        idx_mirror_with("train-images-idx3-ubyte", idx_bytes("u1", (2**31, 2**31, 4), b"")),
    ),
    HardCase(
        "idx-label-2**31-1",
        "download",
        ("t10k-labels-idx1-ubyte: label 2147483647 at index 7 is out of range 0..999",),
        idx_mirror_with("t10k-labels-idx1-ubyte", labels_of(">i4", 2**31 - 1)),
    ),
    HardCase(
        "idx-label-3M",
        "download",
        ("t10k-labels-idx1-ubyte: label 3000000 at index 7 is out of range 0..999",),
        idx_mirror_with("t10k-labels-idx1-ubyte", labels_of(">i4", 3_000_000)),
    ),
    HardCase(
        "idx-label-nan",
        "download",
        ("t10k-labels-idx1-ubyte: label nan at index 7 is out of range", "fetch it again"),
        idx_mirror_with("t10k-labels-idx1-ubyte", labels_of(">f4", float("nan"))),
    ),
    HardCase(
        "other-dataset-than-declared", "download", FASHION_AS_MNIST, other_dataset_than_declared
    ),
    HardCase(
        "disk-full-download",
        "download",
        (
            "cannot write data/raw/train-images-idx3-ubyte: No space left on device",
            "make room",
        ),
        small_disk("1m", lambda s: s.params(data={"source": "embedded"})),
        needs_root=True,
    ),
    HardCase(
        "disk-full-preprocess",
        "preprocess",
        (
            "cannot write data/processed/train.safetensors: No space left on device",
            "make room",
        ),
        small_disk("600k", lambda s: (s.params(), s.raw())),
        needs_root=True,
    ),
    # params.yaml that a stage run directly must refuse
    HardCase(
        "params-duplicate-key",
        "train",
        ("params.yaml: duplicate key 'train' at line", "keep only one"),
        with_previous_log(params_text(lambda t: t + "train:\n  lr: 0.5\n")),
    ),
    HardCase(
        "params-duplicate-nested-key",
        "download",
        ("params.yaml: duplicate key 'source' at line", "keep only one"),
        params_text(lambda t: t.replace("data:\n", "data:\n  source: embedded\n", 1)),
    ),
    HardCase(
        "params-is-a-directory",
        "download",
        ("params.yaml: cannot read it (Is a directory)", "point to a readable file"),
        params_is_a_directory,
    ),
    HardCase(
        "params-not-utf8",
        "preprocess",
        ("params.yaml: not UTF-8 text (byte 0xff at offset 0)", "save it as UTF-8"),
        params_bytes(b"\xff\xfedata: {}\n"),
    ),
    # train: nothing tracked changes, dvclive/ included
    HardCase(
        "train-cuda-without-gpu",
        "train",
        ("train.device=cuda but torch sees no CUDA GPU here",),
        with_previous_log(
            lambda s: (s.params(train={"device": "cuda", "epochs": 1}), s.processed())
        ),
    ),
    HardCase(
        "train-batch-larger-than-data-keeps-dvclive",
        "train",
        ("train.batch_size=500 is larger than the training set",),
        with_previous_log(batch_larger_than_data),
    ),
    HardCase(
        "train-out-of-memory-at-epoch-2",
        "train",
        ("train: out of memory (simulated: tried to allocate 20.00 GiB)", "lower train.batch_size"),
        with_previous_log(lambda s: (s.params(train={"epochs": 3}), s.processed())),
        patch=oom_at_epoch_2,
    ),
    # evaluate: models that are not what train writes
    HardCase(
        "model-nan-weights",
        "evaluate",
        ("cannot write metrics/eval.json: a number is NaN or infinite, which JSON cannot hold",),
        model_with(lambda t: {**t, "layer1.weight": t["layer1.weight"].fill_(float("nan"))}),
    ),
    HardCase(
        "model-inf-bias",
        "evaluate",
        ("cannot write metrics/eval.json: a number is NaN or infinite, which JSON cannot hold",),
        model_with(lambda t: {**t, "layer1.bias": t["layer1.bias"].fill_(float("inf"))}),
    ),
    HardCase(
        "model-overflowing-loss",
        "evaluate",
        ("cannot write metrics/eval.json: a number is NaN or infinite, which JSON cannot hold",),
        model_with(lambda t: {**t, "layer1.weight": t["layer1.weight"].fill_(3e38)}),
    ),
    HardCase(
        "model-fp16",
        "evaluate",
        (
            "weights do not fit the linear architecture",
            "layer1.weight is torch.float16, not torch.float32",
        ),
        model_with(lambda t: {k: v.half() for k, v in t.items()}),
    ),
    HardCase(
        "model-int8",
        "evaluate",
        (
            "weights do not fit the linear architecture",
            "layer1.weight is torch.int8, not torch.float32",
        ),
        model_with(lambda t: {k: v.to(torch.int8) for k, v in t.items()}),
    ),
    HardCase(
        "model-unknown-loss",
        "evaluate",
        ("model.safetensors: no usable model description", "loss 'mae'", "rerun the train"),
        model_with(loss="mae"),
    ),
    HardCase(
        "model-hidden-1e9",
        "evaluate",
        ("model.safetensors: bad model description", "hidden[0]: Input should be a valid integer"),
        model_with(spec={"name": "mlp", "in_features": 784, "num_classes": 10, "hidden": [1e9]}),
    ),
    HardCase(
        "model-hidden-10**9-int",
        "evaluate",
        (
            "weights do not fit the mlp architecture",
            'Missing key(s) in state_dict: "net.0.weight"',
        ),
        model_with(spec={"name": "mlp", "in_features": 784, "num_classes": 10, "hidden": [10**9]}),
    ),
    HardCase(
        "model-negative-classes",
        "evaluate",
        ("bad model description", "num_classes: Input should be greater than or equal to 1"),
        model_with(spec={"name": "linear", "in_features": 784, "num_classes": -5}),
    ),
    # report: the nine hand-edited inputs, and markup in params
    HardCase(
        "predictions-unknown-class",
        "report",
        ("metrics/predictions.csv: row 1 names class 'cat'", "rerun the stage that writes it"),
        edited("metrics/predictions.csv", first_line_then(lambda rows: ["cat,cat,0.5", *rows[1:]])),
    ),
    HardCase(
        "predictions-confidence-above-1",
        "report",
        ("metrics/predictions.csv: row 1: confidence: Input should be less than or equal to 1",),
        edited("metrics/predictions.csv", first_line_then(lambda rows: ["0,0,1.5", *rows[1:]])),
    ),
    HardCase(
        "predictions-confidence-nan",
        "report",
        ("metrics/predictions.csv: row 1: confidence: Input should be a finite number",),
        edited("metrics/predictions.csv", first_line_then(lambda rows: ["0,0,nan", *rows[1:]])),
    ),
    HardCase(
        "predictions-missing-rows",
        "report",
        ("metrics/predictions.csv: 40 rows for 50 test images",),
        edited("metrics/predictions.csv", first_line_then(lambda rows: rows[:40])),
    ),
    HardCase(
        "predictions-missing-column",
        "report",
        ("metrics/predictions.csv: row 1: predicted: Field required",),
        edited(
            "metrics/predictions.csv",
            lambda t: "\n".join(line.split(",")[0] for line in t.splitlines()) + "\n",
        ),
    ),
    HardCase(
        "predictions-extra-field",
        "report",
        ("metrics/predictions.csv: row 1: note: Extra inputs are not permitted",),
        edited(
            "metrics/predictions.csv",
            lambda t: (
                "\n".join(f"{line},x" for line in t.splitlines()).replace(
                    "confidence,x", "confidence,note", 1
                )
                + "\n"
            ),
        ),
    ),
    HardCase(
        "eval-without-accuracy",
        "report",
        ("metrics/eval.json: metric 'accuracy' is missing", "rerun the evaluate stage"),
        edited_json("metrics/eval.json", without("accuracy")),
    ),
    HardCase(
        "eval-string-accuracy",
        "report",
        ("metrics/eval.json: metric 'accuracy' is not a number ('0.9')",),
        edited_json("metrics/eval.json", lambda raw: {**raw, "accuracy": "0.9"}),
    ),
    HardCase(
        "eval-is-a-list",
        "report",
        ("metrics/eval.json: expected a JSON object of metrics",),
        edited_json("metrics/eval.json", lambda raw: [raw]),
    ),
    HardCase(
        "train-log-without-accuracy",
        "report",
        ("metrics/train_log.csv: row 1: Value error, needs exactly one of the columns",),
        edited(
            "metrics/train_log.csv",
            lambda t: (
                t.replace(",test_accuracy", "").replace(",0.5\n", "\n").replace(",0.6\n", "\n")
            ),
        ),
    ),
    HardCase(
        "manifest-without-counts",
        "report",
        ("data/processed/manifest.json: counts: Field required",),
        edited_json("data/processed/manifest.json", without("counts")),
    ),
]


@functools.cache
def can_mount() -> bool:
    """Root with mount rights: the disk-full cases put data/ on a tiny tmpfs."""
    if os.geteuid() != 0:
        return False
    with tempfile.TemporaryDirectory() as where:
        mounted = (
            subprocess.run(
                ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", where], capture_output=True
            ).returncode
            == 0
        )
        if mounted:
            subprocess.run(["umount", where], check=True)
    return mounted


@pytest.mark.parametrize("case", HARD_CASES, ids=[c.id for c in HARD_CASES])
def test_hardening_fault_is_one_line_no_change_bounded_memory(
    case: HardCase,
    scratch: Scratch,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if case.needs_root and not can_mount():
        pytest.skip("needs root with mount rights (a small tmpfs for a full disk)")
    case.setup(scratch)
    if case.patch is not None:
        case.patch(monkeypatch)
    with peak_rss() as peak:
        result = run_case(case, scratch, capsys, monkeypatch)
    assert_failed_cleanly(case, scratch, result)
    for path, text in LIVE_BEFORE.items():  # an earlier run's training log is left as it was
        if path in scratch.planted:
            assert (scratch.root / path).read_text() == text, path
    assert 0 < peak[0] < RSS_BUDGET, f"peak RSS {peak[0] / 2**20:.0f} MiB"


# ----------------------------------------------------- hardening (issue 13): single checks


def test_safetensors_with_any_header_length_loads_and_a_pickle_never_does(
    tmp_path: Path,
) -> None:
    """Safetensors headers of length 256..511: every low byte, 0x80 (a pickle's) included."""
    from mnist_pipeline.data.tensors import load_tensors

    header = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
    path = tmp_path / "model.safetensors"
    for length in range(256, 512):
        path.write_bytes(struct.pack("<Q", length) + header.ljust(length) + bytes(8))
        assert load_tensors(path)[0]["w"].tolist() == [0.0, 0.0], length
    plant_pickle(path, tmp_path / MARKER, protocol=4)  # starts with 0x80 too: still refused
    with pytest.raises(PipelineError, match=r"not a readable safetensors file"):
        load_tensors(path)
    assert not (tmp_path / MARKER).exists()


def test_cnn_model_whose_header_starts_with_0x80_evaluates(tmp_path: Path) -> None:
    """The issue's cnn/relu/cross-entropy model: its file starts 80 03 (896-byte header)."""
    from mnist_pipeline.learning.model_file import load_model

    spec = ModelSpec("cnn", 784, 10, (128,), "relu", (6, 16))
    path = tmp_path / "model.safetensors"
    save_model(build_model(spec), spec, path, "cross_entropy", Head(), ())
    assert path.read_bytes()[:1] == b"\x80"
    assert load_model(path)[1] == spec


def test_stale_temp_siblings_are_removed_by_the_next_run(tmp_path: Path) -> None:
    """What a SIGKILLed run leaves (``.raw.*.tmp`` dirs, ``.x.json.*.tmp`` files) goes."""
    from mnist_pipeline.core.io import atomic_dir

    (tmp_path / ".raw.k1ll3d00.tmp").mkdir()
    (tmp_path / ".raw.k1ll3d00.tmp" / "train-images-idx3-ubyte").write_bytes(bytes(2**20))
    (tmp_path / ".eval.json.k1ll3d00.tmp").write_text("{")
    (tmp_path / ".rawer.k1ll3d00.tmp").mkdir()  # another output's: left alone
    with atomic_dir(tmp_path / "raw") as out:
        write_json({}, out / "manifest.json")
    write_json({"accuracy": 1.0}, tmp_path / "eval.json")
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == [".rawer.k1ll3d00.tmp", "eval.json", "raw"]


def test_markup_in_params_and_manifest_is_printed_as_text() -> None:
    from mnist_pipeline.reporting.report import markdown_table, plain, render_markdown

    evil = "x\n## INJECTED <img src=x onerror=alert(1)>"
    split = make_split(50, 2)
    from mnist_pipeline.evaluation.evaluate import evaluate

    result = evaluate(
        build_model(ModelSpec("linear", 784, 10)), ModelSpec("linear", 784, 10), split
    )
    manifest = {
        "dataset": "mnist",
        "source": "mirror",
        "requested_source": "mirror",
        "origin": evil,
        "counts": {"train": 200, "test": 50},
        "warnings": [evil],
        "files": {"f": {"sha256": "ab" * 32, "verified": evil, "shape": [50]}},
    }
    history = pd.DataFrame({"epoch": [1], "train_loss": [0.5], "test_accuracy": [0.5]})
    text = render_markdown(
        manifest,
        {"data": {"mirror": evil}},
        result.metrics,
        history,
        result.confusion,
        result.per_class,
        "figures",
    )
    row = pd.DataFrame([["data.mirror", "null", evil]], columns=["param", "old", "new"])
    text += markdown_table(row.set_index("param"))
    assert "<img" not in text and "&lt;img src=x onerror=alert(1)&gt;" in text
    assert not any(line.startswith("## INJECTED") for line in text.splitlines())
    assert plain("mnist\x1b[2J\nrm") == "mnist\N{REPLACEMENT CHARACTER}[2J rm"


@pytest.mark.slow  # draws a 200 x 200 confusion heatmap
def test_report_with_200_classes_stays_within_the_memory_budget(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One stray label (199) in an idx set means 200 classes: the report must still fit."""
    from mnist_pipeline.data.splits import to_split
    from mnist_pipeline.evaluation.evaluate import evaluate

    scratch = Scratch(tmp_path)
    report_inputs(scratch)
    images, labels = synthetic_arrays(400, 2)
    labels[7] = 199
    classes = tuple(str(k) for k in range(200))
    split = to_split(images, labels, where="t", dataset="idx", classes=classes)
    save_split(split, tmp_path / "data" / "processed" / "test.safetensors")
    spec = ModelSpec("linear", 784, 200)
    model = build_model(spec)
    result = evaluate(model, spec, split)
    write_json(result.metrics.as_json(), tmp_path / "metrics" / "eval.json")
    result.predictions.to_csv(tmp_path / "metrics" / "predictions.csv", index=False)
    manifest = json.loads((tmp_path / "data" / "processed" / "manifest.json").read_text())
    manifest.update(dataset="idx", classes=list(classes))
    write_json(manifest, tmp_path / "data" / "processed" / "manifest.json")
    with peak_rss() as peak:
        done = stage_here(capsys, "report", *stage_args("report"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert peak[0] < RSS_BUDGET, f"peak RSS {peak[0] / 2**20:.0f} MiB"


def test_each_torchrun_rank_gets_its_own_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    from mnist_pipeline.core.runtime import resolve_device

    chosen: list[int] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    for rank in (0, 1):
        monkeypatch.setenv("LOCAL_RANK", str(rank))
        assert resolve_device("cuda") == torch.device("cuda", rank)
    assert chosen == [0, 1]
    monkeypatch.setenv("LOCAL_RANK", "2")  # a third rank on a two-GPU node: refused
    with pytest.raises(PipelineError, match=r"rank 2 has no GPU of its own \(2 visible\)"):
        resolve_device("auto")


def test_raw_files_of_a_mirror_log_a_line_each(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from mnist_pipeline.data.params import DataParams
    from mnist_pipeline.data.sources import fetch

    mirror = write_idx_set(tmp_path / "raw-mirror")  # no .gz: the raw names are the fallback
    params = DataParams(source="mirror", mirror=str(mirror), verify=False)
    with caplog.at_level("INFO", logger="mnist_pipeline.data.sources"):
        manifest = fetch(params, tmp_path / "out")
    assert manifest["counts"] == {"train": 200, "test": 50}
    fetched = [r.getMessage() for r in caplog.records if r.getMessage().startswith("fetched ")]
    assert len(fetched) == 4 and f"{mirror}/train-images-idx3-ubyte " in fetched[0]


def test_duplicate_keys_fail_the_params_check(tmp_path: Path) -> None:
    from mnist_pipeline.tools.params import load_params

    path = tmp_path / "params.yaml"
    path.write_text((REPO / "params.yaml").read_text() + "train:\n  lr: 0.5\n")
    with pytest.raises(PipelineError, match=r"duplicate key 'train' at line \d+; keep only one"):
        load_params(path)


def test_four_files_together_are_bounded(tmp_path: Path) -> None:
    """Each file under the limit, the dataset over it: the last file read is refused."""
    from mnist_pipeline.data.params import DataParams
    from mnist_pipeline.data.sources import fetch

    mirror = write_idx_set(tmp_path / "mirror")
    big = idx_bytes("u1", (110_000, 28, 28), bytes(110_000 * 784))  # 82 MiB, twice over
    for name in ("train-images-idx3-ubyte", "t10k-images-idx3-ubyte"):
        (mirror / name).write_bytes(big)
    params = DataParams(dataset="idx", source="mirror", mirror=str(mirror))
    with pytest.raises(PipelineError, match=r"t10k-images-idx3-ubyte: .* bytes left for this"):
        fetch(params, tmp_path / "out")
