"""``data/raw/manifest.json``: what the download stage fetched, and from where.

The download stage writes it (``Manifest(**fetch(...))``); preprocess copies it beside
the tensors, and the report and ``summary`` title everything with it. A hand-edited or
stale file stops with one line naming the file, the field and the fix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from mnist_pipeline.core.io import read_json, validated

Count = Annotated[int, Field(ge=0)]


class _Strict(BaseModel):
    """JSON fields as written: no extra keys, no "0.9" for 0.9."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class FileEntry(_Strict):
    sha256: str
    verified: str
    shape: list[int]


class Counts(_Strict):
    train: Count
    test: Count


class Manifest(_Strict):
    """``data/raw/manifest.json``: what the download stage fetched, and from where."""

    dataset: str
    classes: list[str] = Field(min_length=1, max_length=1000)
    requested_source: str
    source: str
    origin: str
    files: dict[str, FileEntry]
    counts: Counts
    warnings: list[str] = []


def read_manifest(path: Path) -> Manifest:
    return validated(Manifest, read_json(path), path)
