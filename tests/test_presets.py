"""Presets in one command: ``python -m mnist_pipeline preset NAME [dvc exp run args]`` runs
the ``presets.yaml`` preset as a ``dvc exp run`` whose params show in ``dvc exp show``."""

import json
import shlex
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO, run
from mnist_pipeline.tools.params import parse_params
from mnist_pipeline.tools.presets import exp_run_command, load_presets

PRESETS = load_presets(REPO / "presets.yaml")
CNN_EMBEDDED_FLOOR = 0.94  # test accuracy of the cnn preset on the embedded 4k/1k sample


def preset_command(*args: str, cwd: Path = REPO) -> tuple[int, str, str]:
    result = run(
        [sys.executable, "-m", "mnist_pipeline", "preset", *args], cwd, False, REPO / "src"
    )
    return result.returncode, result.stdout, result.stderr


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_is_valid_train_params(name: str) -> None:
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    train = parse_params({**raw, "train": {**raw["train"], **PRESETS[name]}}).train
    assert train.model_dump(include=set(PRESETS[name])) == {
        key: tuple(value) if isinstance(value, list) else value
        for key, value in PRESETS[name].items()
    }


def test_the_command_sets_every_key_of_the_preset_then_the_users_args() -> None:
    settings = {"model": "cnn", "channels": [16, 32], "lr": 0.001, "augment": {"rotate": 10}}
    command = exp_run_command(settings, ["-n", "x"])
    assert command[1:] == [
        "-m", "dvc", "exp", "run", "-S", "train.model=cnn", "-S", "train.channels=[16,32]",
        "-S", "train.lr=0.001", "-S", "train.augment.rotate=10", "-n", "x",
    ]  # fmt: skip
    code, out, _ = preset_command("mlp", "--print", "-S", "data.source=embedded")
    assert code == 0
    words = shlex.split(out)
    assert words[:3] == ["dvc", "exp", "run"]
    mlp = PRESETS["mlp"]  # its augment section comes last, one -S per key
    keys = [f"train.{key}" for key, value in mlp.items() if not isinstance(value, dict)]
    keys += [f"train.augment.{sub}" for sub in mlp["augment"]]
    assert [w.split("=")[0] for w in words[4:-2:2]] == keys
    assert words[-2:] == ["-S", "data.source=embedded"]


@pytest.mark.parametrize("name", ["nope", ""])
def test_an_unknown_preset_gets_one_line_listing_the_known_ones(name: str) -> None:
    code, out, err = preset_command(name)
    assert code == 2 and out == ""
    assert err.count("\n") == 1
    assert err.startswith("error: ") and f"known presets: {', '.join(PRESETS)}" in err


@pytest.mark.slow
def test_cnn_preset_runs_as_an_experiment_and_reaches_its_floor(project: Path) -> None:
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", "copy"], project)
    code, out, err = preset_command("cnn", "-n", "cnn-embedded", "-S", "data.source=embedded",
                                    cwd=project)  # fmt: skip
    assert code == 0, out + err
    shown = json.loads(run(["dvc", "exp", "show", "--json"], project).stdout)
    (baseline,) = [entry for entry in shown if entry.get("rev") != "workspace"]
    (row,) = [exp["revs"][0] for exp in baseline["experiments"]]
    assert row["name"] == "cnn-embedded"
    train = row["data"]["params"]["params.yaml"]["data"]["train"]
    assert {key: train[key] for key in PRESETS["cnn"]} == PRESETS["cnn"]
    accuracy = row["data"]["metrics"]["metrics/eval.json"]["data"]["accuracy"]
    assert accuracy >= CNN_EMBEDDED_FLOOR
