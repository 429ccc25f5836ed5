"""``metrics/train_log.csv``: one row per epoch, read back and checked by ``read_history``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mnist_pipeline.core.io import read_csv, read_rows

if TYPE_CHECKING:
    import pandas as pd

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
