"""Bad inputs and faults, end to end: one clear line, a non-zero exit, no output left.

Each case lays out a scratch directory like the project (``params.yaml``, ``data/raw``,
``data/processed``, ``models``, ...), plants one fault and runs one stage script as a
subprocess with exactly the arguments ``dvc.yaml`` gives it. It must exit 2 with ONE
``error:`` line that says what is wrong, where (file, key, value) and how to fix it, with
no traceback, and leave none of the stage's outputs (nor a ``.*.tmp`` file) behind.
The cases run a few at a time, since each process spends ~2 s importing torch.

The DVC cases (marked ``slow``) run ``dvc repro`` in a copy of the project: a stage that
fails leaves ``dvc.lock`` untouched, and a ``dvc repro`` killed with SIGKILL in the middle
of ``train`` is picked up cleanly by the next one, with a consistent lock.

    .venv/bin/python -m pytest tests/test_faults.py [-m "not slow"]
"""

from __future__ import annotations

import functools
import json
import os
import pickle
import shlex
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import (
    REPO,
    error_line,
    git_env,
    make_split,
    run,
    set_params,
    stage,
    synthetic_arrays,
    write_idx_set,
    write_manifest,
)
from mnist_pipeline.core.io import file_digest, save_tensors, write_idx
from mnist_pipeline.data.splits import save_split
from mnist_pipeline.learning.models import ModelSpec, build_model, save_model

DVC_STAGES = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
DEFAULT_PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())

# Runs a stage with torchvision's mirrors on a closed local port and every other
# connection refused: a machine that cannot reach the dataset mirrors. Never the network.
OFFLINE_WRAPPER = """
import runpy, socket, sys
import torchvision.datasets as tvd

for cls in (tvd.MNIST, tvd.FashionMNIST, tvd.KMNIST):
    cls.mirrors = ["http://127.0.0.1:9/"]
_connect = socket.socket.connect

def _loopback_only(self, address):
    host = address[0] if isinstance(address, tuple) else str(address)
    if host not in ("127.0.0.1", "::1", "localhost"):
        raise OSError(f"test: no network ({host})")
    return _connect(self, address)

socket.socket.connect = _loopback_only
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


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
        save_model(build_model(spec), claimed or spec, path, "mse", "softmax")
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
    offline: bool = False  # through OFFLINE_WRAPPER
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


def mirror_url_unreachable(s: Scratch) -> None:
    s.params(data={"source": "mirror", "mirror": "http://127.0.0.1:9/mnist"})


def torchvision_unreachable(s: Scratch) -> None:
    s.params(data={"source": "torchvision"})


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
        "mirror-url-unreachable",
        "download",
        ("cannot reach http://127.0.0.1:9/mnist/", "check the URL and the network"),
        mirror_url_unreachable,
    ),
    Case(
        "torchvision-unreachable",
        "download",
        (
            "data.source=torchvision: cannot download mnist from http://127.0.0.1:9/",
            "data.source=embedded",
        ),
        torchvision_unreachable,
        offline=True,
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
        ("params.yaml: train.epochs: expected an integer, got 'ten'",),
        params_changes(train={"epochs": "ten"}),
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
        ("cannot write data/raw: Permission denied", "make data writable"),
        read_only_output_dir,
        obey_permissions=True,
    ),
    Case(
        "output-parent-is-a-file",
        "download",
        (
            "cannot write data/raw: data is a file, not a directory",
            "remove it or choose another path",
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
            "data/processed/train.safetensors: is a pickle/torch.save file, not safetensors",
            "refusing to load it",
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
            "models/model.safetensors: is a pickle/torch.save file, not safetensors",
            "refusing to load it",
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


@dataclass(frozen=True)
class Outcome:
    scratch: Scratch
    result: subprocess.CompletedProcess[str] | None


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    """Every case's scratch directory and stage run; the runs go a few at a time."""
    base = tmp_path_factory.mktemp("faults")
    wrapper = base / "offline_wrapper.py"
    wrapper.write_text(OFFLINE_WRAPPER)
    scratches = {}
    for case in CASES:
        scratch = Scratch(base / case.id)
        scratch.root.mkdir()
        case.setup(scratch)
        scratches[case.id] = scratch

    def execute(case: Case) -> subprocess.CompletedProcess[str] | None:
        if case.obey_permissions and not obeys_permissions():
            return None  # skipped below
        return stage(
            case.stage,
            *stage_args(case.stage),
            cwd=scratches[case.id].root,
            via=wrapper if case.offline else None,
            prefix=AS_NON_ROOT if case.obey_permissions and os.geteuid() == 0 else (),
        )

    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        results = dict(zip([c.id for c in CASES], pool.map(execute, CASES), strict=True))
    for scratch in scratches.values():  # let pytest clean up what was made read-only
        if (scratch.root / "data").is_dir():
            (scratch.root / "data").chmod(0o755)
    return {case.id: Outcome(scratches[case.id], results[case.id]) for case in CASES}


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
    case: Case, outcomes: dict[str, Outcome]
) -> None:
    if case.obey_permissions and not obeys_permissions():
        pytest.skip("running as root without setpriv: permissions are not enforced")
    outcome = outcomes[case.id]
    assert outcome.result is not None
    line = error_line(outcome.result)  # exit 2, exactly one error line, no traceback
    for fragment in case.expected:
        assert fragment in line, line
    assert leftovers(outcome.scratch, case.stage) == []
    assert not (outcome.scratch.root / MARKER).exists(), "a planted pickle was executed"
    for planted in outcome.scratch.planted:  # what was in the way is left alone
        assert (outcome.scratch.root / planted).exists()


def test_planted_pickles_would_run_code(tmp_path: Path) -> None:
    """The payloads are live: unpickling one does create the marker (so its absence counts)."""
    for protocol in (0, 4):
        path, marker = tmp_path / f"{protocol}.safetensors", tmp_path / f"{protocol}.marker"
        plant_pickle(path, marker, protocol)
        pickle.loads(path.read_bytes())  # on purpose, here only: proves the payload is live
        assert marker.exists()


# ------------------------------------------------------------------------------ DVC


@pytest.mark.slow
def test_dvc_repro_with_bad_params_stops_with_one_line_and_keeps_the_lock(project: Path) -> None:
    set_params(project, train={"lrr": 0.1})
    lock = (project / "dvc.lock").read_text()
    result = run(["dvc", "repro"], project, check=False)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    (ours,) = [line for line in output.splitlines() if line.startswith("error: ")]
    assert ours.startswith("error: params.yaml: train.lrr: unknown key; did you mean 'train.lr'?")
    assert "failed to reproduce 'download'" in output and "Traceback" not in output
    assert (project / "dvc.lock").read_text() == lock
    assert not (project / "data" / "raw").exists()


def lock_outs(project: Path) -> dict[str, str]:
    """``path -> md5`` of every output dvc.lock records."""
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    return {
        out["path"]: out["md5"] for spec in lock["stages"].values() for out in spec.get("outs", [])
    }


@pytest.mark.slow
def test_sigkill_during_train_then_repro_reruns_it_cleanly(project: Path) -> None:
    epochs = 60
    set_params(project, data={"source": "embedded"}, train={"epochs": epochs})
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

    # The kill left no model, no temp file, and no lock entry claiming the new params.
    assert not (project / "models" / "model.safetensors").exists()
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
def test_params_value_is_one_line_before_any_work(case: Case, tmp_path: Path) -> None:
    """Values that once crashed deep inside torch or sklearn stop at the params check."""
    scratch = Scratch(tmp_path)
    scratch.processed()  # the stage's inputs are all there: only params can stop it
    case.setup(scratch)
    line = error_line(stage(case.stage, *stage_args(case.stage), cwd=tmp_path))
    for fragment in case.expected:
        assert fragment in line, line
    assert leftovers(scratch, case.stage) == []
