"""``python -m mnist_pipeline COMMAND [ARGS]`` (or ``mnist-pipeline``): the tools; ``--help``
lists them, ``COMMAND --help`` shows each one's arguments. DVC runs the stages (``dvc repro``).
"""

import argparse
import importlib

# command -> (module under mnist_pipeline whose main(argv) runs it, one line of help)
COMMANDS = {
    "params": ("tools.params", "check params.yaml; --keys lists keys and choices"),
    "validate": ("tools.validate", "check dvc.yaml, deps, params (make validate)"),
    "summary": ("reporting.summary", "print a run's headline numbers"),
    "predict": ("tools.predict", "classify your own images with the model"),
    "serve": ("serving.serve", "the model over HTTP with a draw-a-digit page"),
    "preset": ("tools.presets", "run a presets.yaml preset as a dvc experiment"),
    "exps": ("tools.experiments", "experiments side by side: metrics, changed params"),
    "worked-example": ("tools.worked_example", "the notebook's Question 1"),
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
    module = importlib.import_module(f"mnist_pipeline.{COMMANDS[args.command][0]}")
    return int(module.main(rest))


if __name__ == "__main__":
    raise SystemExit(main())
