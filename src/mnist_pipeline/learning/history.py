"""``metrics/train_log.csv``, one row per epoch: written by ``history_frame``, read back and
checked by ``read_history`` (without torch: the report reads it)."""

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
    """``epoch, train_loss``, with a val slice ``train_accuracy, val_loss``, then the scoring
    split's accuracy, with a schedule ``lr``, with a val slice the ``shipped`` epoch (1)."""
    import pandas as pd

    def rounded(name: str) -> list[float]:
        return [round(getattr(r, name), 6) for r in history]

    columns = {"epoch": [r.epoch for r in history], "train_loss": rounded("train_loss")}
    if scored_on == "val":
        columns |= {"train_accuracy": rounded("train_accuracy"), "val_loss": rounded("val_loss")}
    columns[f"{scored_on}_accuracy"] = rounded("accuracy")
    if scheduled:
        columns["lr"] = [float(f"{r.lr:.6g}") for r in history]
    if scored_on == "val":
        columns["shipped"] = [int(r.epoch == shipped) for r in history]
    return pd.DataFrame(columns)
