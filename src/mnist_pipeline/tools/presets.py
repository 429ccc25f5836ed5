"""Run an accuracy preset as a DVC experiment: ``python -m mnist_pipeline preset cnn``
(``make preset P=cnn``).

A preset is a set of ``train`` settings in ``presets.yaml`` (the one place presets live).
The command runs ``dvc exp run -S train.KEY=VALUE ...`` with every one of them, so the
experiment's params show in ``dvc exp show`` like any other; arguments after the preset
name go to ``dvc exp run`` as they are (the dataset is the user's choice, e.g.
``-S data.dataset=fashion-mnist -S data.source=mirror -S data.mirror=DIR``, or ``-n NAME``,
``--queue``). ``--print`` shows the command instead of running it.
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
from mnist_pipeline.learning.config import TrainParams

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


def preset(name: str, presets: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The settings of preset ``name``; an unknown name lists the known ones."""
    if name not in presets:
        which = f"unknown preset {name!r}" if name else "no preset named"
        raise PipelineError(f"{which}; known presets: {', '.join(presets)} ({PRESETS})")
    return presets[name]


def exp_run_command(settings: dict[str, Any], extra: list[str]) -> list[str]:
    """``dvc exp run``, one ``-S train.KEY=VALUE`` per setting (values as YAML), ``extra``."""
    sets = [
        arg
        for key, value in settings.items()
        for arg in ("-S", f"train.{key}={value if isinstance(value, str) else yaml_flow(value)}")
    ]
    return [sys.executable, "-m", "dvc", "exp", "run", *sets, *extra]


def yaml_flow(value: Any) -> str:
    """A number or a list as one YAML flow token, no spaces: ``0.001``, ``[16,32]``."""
    return json.dumps(value, separators=(",", ":"))


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
    command = exp_run_command(preset(args.name, load_presets()), extra)
    if args.print:
        print(shlex.join(["dvc", *command[3:]]))
        return 0
    return subprocess.run(command, check=False).returncode


if __name__ == "__main__":
    raise SystemExit(main())
