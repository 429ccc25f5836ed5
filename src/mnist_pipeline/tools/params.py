"""The whole ``params.yaml`` schema, from the sections each stage's folder declares: what
``validate`` checks (each stage checks its own section when it runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from pydantic import model_validator

from mnist_pipeline.core import params as machinery
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
