"""The command-line front door: ``python -m mnist_pipeline COMMAND [ARGS]`` (or the
``mnist-pipeline`` console script). ``--help`` lists the commands; ``COMMAND --help``
shows each one's arguments. The pipeline's stages are run by DVC (``dvc repro``), not here.
"""

from __future__ import annotations

import argparse
import importlib

# command -> (module whose main(argv) runs it, one line of help)
COMMANDS = {
    "params": (
        "mnist_pipeline.learning.config",
        "check params.yaml; --keys lists keys and choices",
    ),
    "validate": ("mnist_pipeline.tools.validate", "check dvc.yaml, deps, params (make validate)"),
    "compare": ("mnist_pipeline.tools.compare", "compare two runs (make compare REV=...)"),
    "summary": ("mnist_pipeline.reporting.summary", "print a run's headline numbers"),
    "predict": ("mnist_pipeline.tools.predict", "classify your own images with the model"),
    "serve": ("mnist_pipeline.serving.serve", "the model over HTTP with a draw-a-digit page"),
    "preset": ("mnist_pipeline.tools.presets", "run a presets.yaml preset as a dvc experiment"),
    "worked-example": ("mnist_pipeline.tools.worked_example", "the notebook's Question 1"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mnist_pipeline",
        description="The MNIST pipeline's tools; its stages run under DVC (`dvc repro`).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, help_line) in COMMANDS.items():
        commands.add_parser(name, help=help_line, add_help=False)
    args, rest = parser.parse_known_args(argv)
    return int(importlib.import_module(COMMANDS[args.command][0]).main(rest))


if __name__ == "__main__":
    raise SystemExit(main())
