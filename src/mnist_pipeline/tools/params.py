"""The whole ``params.yaml`` schema, from the sections each stage's folder declares:
``python -m mnist_pipeline params [--keys]`` and ``validate`` check it."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Literal, cast, get_args, get_origin

from pydantic import model_validator

from mnist_pipeline.core import params as machinery
from mnist_pipeline.core.cli import entry_point
from mnist_pipeline.core.params import Section, read_yaml
from mnist_pipeline.data.params import DataParams
from mnist_pipeline.learning.params import TrainParams
from mnist_pipeline.reporting.params import ReportParams


class Params(Section):
    data: DataParams
    train: TrainParams
    report: ReportParams

    @model_validator(mode="before")
    @classmethod
    def _empty_sections(cls, raw: Any) -> Any:
        """``train:`` with nothing under it is a section of defaults."""
        return {k: {} if v is None else v for k, v in raw.items()} if isinstance(raw, dict) else raw


SECTIONS = {name: cast(type[Section], f.annotation) for name, f in Params.model_fields.items()}


def problems(raw: Any) -> list[str]:
    return machinery.problems(Params, raw)


def parse_params(raw: Any) -> Params:
    return machinery.parse(Params, raw)


def load_params(path: Path) -> Params:
    """A whole params file, validated; errors name the file and the key."""
    return machinery.parse(Params, read_yaml(path), source=path)


@entry_point
def main(argv: list[str] | None = None) -> None:
    """Validate a params file and print 'ok' or the problem; or list every key."""
    parser = argparse.ArgumentParser(description="Check a params file.")
    parser.add_argument("path", nargs="?", type=Path, default=Path("params.yaml"))
    parser.add_argument("--keys", action="store_true", help="list keys, defaults, choices")
    args = parser.parse_args(argv)
    if not args.keys:
        load_params(args.path)
        print(f"{args.path}: ok")
        return
    for name, section in SECTIONS.items():
        for key, field in section.model_fields.items():
            literal = get_origin(field.annotation) is Literal
            allowed = f" (one of: {', '.join(get_args(field.annotation))})" if literal else ""
            print(f"{name}.{key}: {field.default}{allowed}")
