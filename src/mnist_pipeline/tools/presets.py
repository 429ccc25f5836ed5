"""Run a ``presets.yaml`` preset as a DVC experiment: ``python -m mnist_pipeline preset cnn``.

A preset is a set of ``train`` settings; the command runs ``dvc exp run -S train.KEY=VALUE ...``
so they show in ``dvc exp show``. Arguments after the name go to ``dvc exp run`` unchanged
(``-n NAME``, ``--queue``, ``-S data.dataset=fashion-mnist``); ``--print`` only shows it.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from mnist_pipeline.core.cli import entry_point
from mnist_pipeline.core.errors import PipelineError
from mnist_pipeline.learning.params import TrainParams

PRESETS = Path("presets.yaml")


def load_presets(path: Path = PRESETS) -> dict[str, dict[str, Any]]:
    """Every preset in ``path``: name -> ``train`` settings, each key a ``TrainParams`` field."""
    if not path.is_file():
        raise PipelineError(f"{path}: no presets file here; run from the project's root")
    presets = yaml.safe_load(path.read_text())
    if not isinstance(presets, dict) or not all(isinstance(v, dict) for v in presets.values()):
        raise PipelineError(f"{path}: expected a mapping of preset name -> train settings")
    for name, settings in presets.items():
        unknown = sorted(set(settings) - set(TrainParams.model_fields))
        if unknown:
            raise PipelineError(
                f"{path}: preset {name!r} sets {', '.join(unknown)}, not train keys; "
                "see `python -m mnist_pipeline params --keys`"
            )
    return presets


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
        prog="python -m mnist_pipeline preset",
        description="run a presets.yaml preset as a DVC experiment",
        epilog="Exit status 2 with one 'error:' line for an unknown preset.",
    )
    parser.add_argument("name", nargs="?", default="", help="a preset in presets.yaml")
    parser.add_argument("--print", action="store_true", help="print the command, run nothing")
    args, extra = parser.parse_known_args(argv)
    presets = load_presets()
    if args.name not in presets:
        which = f"unknown preset {args.name!r}" if args.name else "no preset named"
        raise PipelineError(f"{which}; known presets: {', '.join(presets)} ({PRESETS})")
    command = exp_run_command(presets[args.name], extra)
    if args.print:
        print(shlex.join(["dvc", *command[3:]]))
        return 0
    return subprocess.run(command, check=False).returncode


if __name__ == "__main__":
    raise SystemExit(main())
