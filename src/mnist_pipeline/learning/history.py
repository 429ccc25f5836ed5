"""``metrics/train_log.csv``: one row per epoch, written by ``history_frame`` and read back,
checked, by ``read_history`` (the report reads it without torch)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mnist_pipeline.core.io import read_csv, read_rows

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class EpochRecord:
    epoch: int
    train_loss: float  # the mean minibatch loss over the epoch
    accuracy: float  # on the scoring split: test set, or the held-out val slice
    lr: float  # the learning rate of this epoch
    train_accuracy: float | None = None  # with a val slice: on the whole training part
    val_loss: float | None = None  # with a val slice: the training loss on it


Score = Annotated[float, Field(ge=0.0, le=1.0)]


class EpochRow(BaseModel):
    """One row: the loss and the test or val accuracy; with a val slice the train accuracy,
    val loss and whether the epoch shipped; with a schedule the rate."""

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


def read_history(path: Path) -> pd.DataFrame:
    return read_rows(path, EpochRow, read_csv(path))


def history_frame(
    history: Sequence[EpochRecord], scored_on: str, scheduled: bool = False, shipped: int = 0
) -> pd.DataFrame:
    """The per-epoch log: ``epoch, train_loss, test_accuracy`` for the notebook's run; with a
    val slice ``train_accuracy, val_loss, val_accuracy`` and ``shipped`` (1 on the shipped
    epoch); with a schedule, ``lr`` after the scores."""
    import pandas as pd

    columns: dict[str, list[object]] = {
        "epoch": [r.epoch for r in history],
        "train_loss": [round(r.train_loss, 6) for r in history],
    }
    if scored_on == "val":
        columns["train_accuracy"] = [round(r.train_accuracy or 0.0, 6) for r in history]
        columns["val_loss"] = [round(r.val_loss or 0.0, 6) for r in history]
    columns[f"{scored_on}_accuracy"] = [round(r.accuracy, 6) for r in history]
    if scheduled:
        columns["lr"] = [float(f"{r.lr:.6g}") for r in history]
    if scored_on == "val":
        columns["shipped"] = [int(r.epoch == shipped) for r in history]
    return pd.DataFrame(columns)
