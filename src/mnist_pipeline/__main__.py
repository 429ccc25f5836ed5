"""``python -m mnist_pipeline COMMAND [ARGS]`` (or ``mnist-pipeline``): the tools; ``--help``
lists them, ``COMMAND --help`` shows each one's arguments. DVC runs the stages (``dvc repro``)."""

import argparse
import importlib
import sys
from pathlib import Path

# command -> (module under mnist_pipeline whose main(argv) runs it, one line of help)
COMMANDS = {
    "validate": ("tools.validate", "check dvc.yaml, deps, params (make validate)"),
    "predict": ("tools.predict", "classify your own images with the model"),
    "serve": ("serving.serve", "the model over HTTP with a draw-a-digit page"),
    "preset": ("tools.presets", "run a presets.yaml preset as a dvc experiment"),
    "worked-example": ("tools.worked_example", "the notebook's Question 1"),
}


class Version(argparse.Action):
    """``--version``: the installed package's (importlib.metadata is imported only for it)."""

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        from importlib.metadata import version

        print(f"mnist-pipeline {version('mnist-pipeline')}")
        parser.exit()


def main(argv: list[str] | None = None) -> int:
    """Run COMMAND's ``main`` on the other arguments; its usage line names it as it was typed."""
    typed = Path(sys.argv[0]).name
    prog = typed if typed.startswith("mnist-") else "python -m mnist_pipeline"  # a console script
    parser = argparse.ArgumentParser(
        prog=prog,
        description="The MNIST pipeline's tools; its stages run under DVC (`dvc repro`).",
    )
    parser.add_argument("--version", action=Version, nargs=0, help="show the version and exit")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, help_line) in COMMANDS.items():
        commands.add_parser(name, help=help_line, add_help=False)
    args, rest = parser.parse_known_args(argv)
    module = importlib.import_module(f"mnist_pipeline.{COMMANDS[args.command][0]}")
    program, sys.argv[0] = sys.argv[0], f"{prog} {args.command}"  # the command's argparse prog
    try:
        return int(module.main(rest))
    finally:
        sys.argv[0] = program


if __name__ == "__main__":
    raise SystemExit(main())
