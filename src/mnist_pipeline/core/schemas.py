"""What the stages hand each other, as typed pydantic models, and readers that check them.

One model per file kind: the download manifest, a row of the training log and a row of
the predictions (``eval.json`` is ``evaluation.scores.Metrics``). Every reader validates
what it reads, so a hand-edited or stale file stops with one line naming the file, the
field and the fix — never a KeyError or a class that no model knows, three steps later.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from mnist_pipeline.core.errors import PipelineError, one_line
from mnist_pipeline.core.io import RERUN, read_csv, read_json

if TYPE_CHECKING:
    import pandas as pd

Count = Annotated[int, Field(ge=0)]
Score = Annotated[float, Field(ge=0.0, le=1.0)]


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


class EpochRow(BaseModel):
    """One row of ``metrics/train_log.csv``: the loss and the test (or val) accuracy; with a
    validation slice also the train accuracy, the val loss and whether the epoch shipped;
    with a schedule the epoch's learning rate."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    epoch: int = Field(ge=1)
    train_loss: float = Field(ge=0.0)  # every loss here is a sum of squares or a -log p
    test_accuracy: Score | None = None
    val_accuracy: Score | None = None
    train_accuracy: Score | None = None
    val_loss: float | None = None
    lr: float | None = Field(default=None, ge=0.0)
    shipped: int | None = Field(default=None, ge=0, le=1)

    @model_validator(mode="after")
    def one_accuracy(self) -> EpochRow:
        if (self.test_accuracy is None) == (self.val_accuracy is None):
            raise ValueError("needs exactly one of the columns test_accuracy, val_accuracy")
        return self


class Prediction(BaseModel):
    """One row of ``metrics/predictions.csv``: class names, actual and predicted."""

    model_config = ConfigDict(extra="forbid")
    actual: str
    predicted: str


def validated(kind: Any, data: Any, where: Path | str) -> Any:
    """``data`` checked against ``kind`` (a model, or e.g. ``list[Row]``), or one line."""
    try:
        return TypeAdapter(kind).validate_python(data)
    except ValidationError as err:
        raise PipelineError(f"{where}: {one_line(err)}{RERUN}") from err


def read_manifest(path: Path) -> Manifest:
    return validated(Manifest, read_json(path), path)


def _rows(path: Path, row: type, frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` (read from ``path``) once each row validates as ``row`` (at least one)."""
    validated(list[row], frame.to_dict(orient="records"), path)  # type: ignore[valid-type]
    if frame.empty:
        raise PipelineError(f"{path}: no rows{RERUN}")
    return frame


def read_history(path: Path) -> pd.DataFrame:
    return _rows(path, EpochRow, read_csv(path))


def read_predictions(path: Path, classes: tuple[str, ...], n_test: int) -> pd.DataFrame:
    """One row per test image, each naming classes the test split has."""
    frame = _rows(path, Prediction, read_csv(path, dtype=str))
    if len(frame) != n_test:
        raise PipelineError(f"{path}: {len(frame)} rows for {n_test} test images{RERUN}")
    unknown = ~frame.isin(classes)
    if unknown.to_numpy().any():
        row, column = next(zip(*unknown.to_numpy().nonzero(), strict=True))
        value = frame.iat[row, column]
        raise PipelineError(
            f"{path}: row {row + 1} names class {value!r}, not one of the test split's "
            f"{len(classes)} classes{RERUN}"
        )
    return frame
