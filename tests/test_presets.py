"""Presets in one command: ``python -m mnist_pipeline preset NAME [dvc exp run args]`` runs
the ``presets.yaml`` preset as a ``dvc exp run`` whose params show in ``dvc exp show``. A
preset is validated over ``params.yaml``'s ``train`` before anything runs, a failed or stopped
experiment leaves ``params.yaml`` byte for byte as it was, and a name is never shell."""

import json
import shutil
import signal
import sys
from pathlib import Path

import pytest

from conftest import REPO, run
from mnist_pipeline.core.cli import Interrupted
from mnist_pipeline.core.errors import PipelineError
from mnist_pipeline.tools import presets
from mnist_pipeline.tools.presets import exp_run_command, load_presets, main, preset

PRESETS = load_presets(REPO / "presets.yaml")
CNN_EMBEDDED_FLOOR = 0.94  # test accuracy of the cnn preset on the embedded 4k/1k sample


class FakeDvc:
    """``dvc exp run`` as ``params.yaml`` sees it: ``-S`` writes the values there first, then
    the run ends with ``code``, or is stopped (``wait`` raises ``stop`` once)."""

    def __init__(self, command: list[str], code: int, stop: BaseException | None) -> None:
        Path("params.yaml").write_text("train:\n  lr: 0.5\n")
        self.command, self.code, self.stop = command, code, stop
        self.ended = self.terminated = False

    def wait(self) -> int:
        if self.stop is not None:
            stop, self.stop = self.stop, None
            raise stop
        self.ended = True
        return self.code

    def terminate(self) -> None:  # as Popen's: nothing once the process has ended
        if not self.ended:
            self.terminated, self.code = True, -signal.SIGTERM


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder holding the project's presets.yaml and params.yaml, the working directory."""
    for name in ("presets.yaml", "params.yaml"):
        shutil.copy(REPO / name, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def fake_dvc(
    monkeypatch: pytest.MonkeyPatch, code: int = 0, stop: BaseException | None = None
) -> list[FakeDvc]:
    """Every ``subprocess.Popen`` becomes a ``FakeDvc``; the list holds those started."""
    started: list[FakeDvc] = []

    def start(command: list[str]) -> FakeDvc:
        started.append(FakeDvc(command, code, stop))
        return started[-1]

    monkeypatch.setattr(presets.subprocess, "Popen", start)
    return started


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_is_valid_train_params(name: str) -> None:
    assert preset(name, REPO / "presets.yaml", REPO / "params.yaml") == PRESETS[name]


def test_the_command_sets_every_key_of_the_preset_then_the_users_args(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = {"model": "cnn", "channels": [16, 32], "lr": 0.001, "augment": {"rotate": 10}}
    command = exp_run_command(settings, ["-n", "x"])
    assert command[1:] == [
        "-m", "dvc", "exp", "run", "-S", "train.model=cnn", "-S", "train.channels=[16,32]",
        "-S", "train.lr=0.001", "-S", "train.augment.rotate=10", "-n", "x",
    ]  # fmt: skip
    started = fake_dvc(monkeypatch)
    assert main(["mlp", "-S", "data.source=embedded"]) == 0
    words = started[0].command[2:]
    assert words[:3] == ["dvc", "exp", "run"]
    mlp = PRESETS["mlp"]  # a section (augment) runs as one -S per key
    keys = [
        f"train.{key}.{sub}" if isinstance(value, dict) else f"train.{key}"
        for key, value in mlp.items()
        for sub in (value if isinstance(value, dict) else [None])
    ]
    assert [w.split("=")[0] for w in words[4:-2:2]] == keys
    assert words[-2:] == ["-S", "data.source=embedded"]


@pytest.mark.parametrize("name", ["nope", "", "x; touch pwned", "../cnn"])
def test_an_unknown_preset_gets_one_line_listing_the_known_ones(
    workspace: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    assert main([name]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert err.startswith("error: ") and f"known presets: {', '.join(PRESETS)}" in err


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ("lr: fast", "train.lr: expected a number, got 'fast'"),
        ("lrr: 0.1", "train.lrr: unknown key; did you mean 'train.lr'?"),
        ("hidden: [0]", "train.hidden[0]: 0 is out of range (must be >= 1)"),
        ("keep: best", "train.keep: best needs a validation slice"),
    ],
)
def test_a_bad_preset_is_one_line_and_runs_nothing(
    workspace: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    settings: str,
    problem: str,
) -> None:
    (workspace / "presets.yaml").write_text(f"bad:\n  {settings}\n")
    before = (workspace / "params.yaml").read_bytes()
    started = fake_dvc(monkeypatch)
    assert main(["bad"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: presets.yaml: preset 'bad' (over params.yaml): {problem}")
    assert err.count("\n") == 1 and started == []
    assert (workspace / "params.yaml").read_bytes() == before


@pytest.mark.parametrize("text", ["- linear\n- mlp\n", "linear: 0.1\n"])
def test_presets_yaml_that_is_not_name_to_settings_is_one_line(workspace: Path, text: str) -> None:
    (workspace / "presets.yaml").write_text(text)
    with pytest.raises(PipelineError, match=r"^presets.yaml: expected a mapping of pre"):
        load_presets()


def test_a_preset_named_as_shell_is_refused(workspace: Path) -> None:
    (workspace / "presets.yaml").write_text("'x; rm -rf ~':\n  lr: 0.1\n")
    with pytest.raises(presets.PipelineError, match=r"preset name 'x; rm -rf ~' is not"):
        load_presets()


def test_a_failed_experiment_leaves_params_yaml_as_it_was(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = (workspace / "params.yaml").read_bytes()
    started = fake_dvc(monkeypatch, code=255)
    assert main(["mlp"]) == 255
    (dvc,) = started
    assert dvc.command[1:5] == ["-m", "dvc", "exp", "run"]
    assert (workspace / "params.yaml").read_bytes() == before


def test_a_stopped_experiment_is_stopped_and_leaves_params_yaml_as_it_was(
    workspace: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """SIGTERM (or Ctrl-C) while dvc runs: dvc is stopped first, then params.yaml restored."""
    before = (workspace / "params.yaml").read_bytes()
    started = fake_dvc(monkeypatch, code=255, stop=Interrupted(signal.SIGTERM))
    assert main(["cnn"]) == 128 + signal.SIGTERM
    (dvc,) = started
    assert dvc.terminated
    assert (workspace / "params.yaml").read_bytes() == before
    assert capsys.readouterr().err.startswith("error: interrupted by SIGTERM")


def test_a_successful_experiment_keeps_what_dvc_wrote(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_dvc(monkeypatch, code=0)
    assert main(["linear"]) == 0
    assert (workspace / "params.yaml").read_text() == "train:\n  lr: 0.5\n"


# Subprocess: `make` and its shell are what could expand the name.
def test_make_preset_hands_the_name_over_unexpanded(project: Path) -> None:
    """Shell or make syntax in ``P`` runs nothing: the name arrives as it was typed."""
    (project / ".venv").symlink_to(Path(sys.executable).parent.parent)  # this venv, not remade
    for name in ("$(touch pwned)", "x; touch pwned", '"; touch pwned; "', "`touch pwned`",
                 "$(shell touch pwned)", "'; touch pwned; '"):  # fmt: skip
        make = ["make", "-s", "-o", ".venv/.installed", "preset", f"P={name}"]
        result = run(make, project, check=False)
        assert result.returncode == 2 and result.stdout == "", result.stderr
        assert result.stderr.startswith(f"error: unknown preset {name!r}; known presets:")
    assert not (project / "pwned").exists()


# Subprocess: a real `dvc exp run` whose result `dvc exp show` lists.
@pytest.mark.slow
def test_cnn_preset_runs_as_an_experiment_and_reaches_its_floor(reproduced_copy: Path) -> None:
    project = reproduced_copy  # committed, its data already downloaded and preprocessed
    result = run(
        [sys.executable, "-m", "mnist_pipeline", "preset", "cnn", "-n", "cnn-embedded",
         "-S", "data.source=embedded"], project, check=False, src=REPO / "src",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    shown = json.loads(run(["dvc", "exp", "show", "--json"], project).stdout)
    (baseline,) = [entry for entry in shown if entry.get("rev") != "workspace"]
    (row,) = [exp["revs"][0] for exp in baseline["experiments"]]
    assert row["name"] == "cnn-embedded"
    train = row["data"]["params"]["params.yaml"]["data"]["train"]
    assert {key: train[key] for key in PRESETS["cnn"]} == PRESETS["cnn"]
    accuracy = row["data"]["metrics"]["metrics/eval.json"]["data"]["accuracy"]
    assert accuracy >= CNN_EMBEDDED_FLOOR
