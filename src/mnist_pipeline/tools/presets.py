"""``python -m mnist_pipeline preset cnn [dvc exp run args]``: a ``presets.yaml`` preset, validated
over ``params.yaml``'s ``train``, run as ``dvc exp run -S train.KEY=VALUE ...``."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from mnist_pipeline.core.cli import entry_point
from mnist_pipeline.core.errors import PipelineError, shown
from mnist_pipeline.core.io import write_bytes
from mnist_pipeline.core.params import load_section, parse, read_yaml
from mnist_pipeline.learning.params import TrainParams

PRESETS, PARAMS = Path("presets.yaml"), Path("params.yaml")
NAME = re.compile(r"[A-Za-z0-9_-]+")  # a preset name: never shell


def load_presets(path: Path = PRESETS) -> dict[str, dict[str, Any]]:
    """Preset name -> ``train`` settings."""
    presets = read_yaml(path)
    if not isinstance(presets, dict) or not all(isinstance(v, dict) for v in presets.values()):
        raise PipelineError(f"{path}: expected a mapping of preset name -> train settings")
    if bad := [name for name in presets if not NAME.fullmatch(str(name))]:
        raise PipelineError(f"{path}: preset name {shown(bad[0])} is not letters, digits, _, -")
    return presets


def preset(name: str, path: Path = PRESETS, params: Path = PARAMS) -> dict[str, Any]:
    """Preset ``name``'s settings, once they make valid ``train`` params over ``params``."""
    presets = load_presets(path)
    if name not in presets:
        which = f"unknown preset {shown(name)}" if name else "no preset named"
        raise PipelineError(f"{which}; known presets: {', '.join(presets)} ({path})")
    train = load_section(params, "train", TrainParams).model_dump()
    source = f"{path}: preset '{name}' (over {params})"
    parse(TrainParams, {**train, **presets[name]}, ("train",), source)
    return presets[name]


def exp_run_command(settings: dict[str, Any], extra: list[str]) -> list[str]:
    """``dvc exp run``, one ``-S train.KEY=VALUE`` per setting (lists as ``[16,32]``, a
    section's keys each as ``train.KEY.SUB``), ``extra``."""
    sets = []
    for key, value in settings.items():
        for sub, item in value.items() if isinstance(value, dict) else [("", value)]:
            text = item if isinstance(item, str) else json.dumps(item, separators=(",", ":"))
            name = f"{key}.{sub}" if sub else key
            sets += ["-S", f"train.{name}={text}"]
    return [sys.executable, "-m", "dvc", "exp", "run", *sets, *extra]


@entry_point
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Run a presets.yaml preset as a DVC experiment; the other arguments go to "
        "`dvc exp run`. A failed or stopped run leaves params.yaml as it was.",
    )
    parser.add_argument("name", nargs="?", default="", help="a preset in presets.yaml")
    args, extra = parser.parse_known_args(argv)
    command = exp_run_command(preset(args.name), extra)
    before = PARAMS.read_bytes()  # `-S` writes params.yaml: put back unless the run succeeds
    run = subprocess.Popen(command)
    try:
        run.wait()
    finally:
        run.terminate()  # SIGTERM or Ctrl-C (cli.Interrupted) while dvc runs: stop it first
        if (code := run.wait()) != 0:
            write_bytes(before, PARAMS)
    return code
