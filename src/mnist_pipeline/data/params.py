"""``params.yaml``'s ``data`` section: which dataset, and where its four IDX files come from."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Strict

from mnist_pipeline.core.params import Flag, Section, Seed
from mnist_pipeline.data.sources import DATASETS, SOURCES


class DataParams(Section):
    dataset: Literal[tuple(DATASETS)] = "mnist"
    source: Literal[("auto", *SOURCES)] = "auto"  # auto: the mirror if set, else embedded
    mirror: Annotated[str, Strict()] | None = None  # the folder holding the four IDX files
    split_seed: Seed = 0  # the embedded sample's stratified split
    verify: Flag = True  # false: accept known files matching no checksum
