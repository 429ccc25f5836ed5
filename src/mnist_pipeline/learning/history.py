"""Each epoch's record: logged (``log_epoch``), judged (``Selection``), written to the train log
(``history_csv``) and read back checked (``read_history``, without torch: the report's)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mnist_pipeline.core.io import read_csv, read_rows

if TYPE_CHECKING:
    import pandas as pd
    from torch import Tensor, nn

    from mnist_pipeline.learning.params import TrainParams

log = logging.getLogger("mnist_pipeline.train")


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


def history_csv(
    history: Sequence[EpochRecord], scored_on: str, scheduled: bool = False, shipped: int = 0
) -> str:
    """``epoch, train_loss``, with a val slice ``train_accuracy, val_loss``, then the scoring
    split's accuracy, with a schedule ``lr``, with a val slice the ``shipped`` epoch (1)."""

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
    lines = [",".join(columns)]
    lines += [",".join(map(str, row)) for row in zip(*columns.values(), strict=True)]
    return "\n".join(lines) + "\n"


class Selection:
    """Which epoch ships (``keep: best``: the best ``monitor`` so far) and when to stop
    (``patience``: epochs without a strictly better score); without a val slice, the last."""

    def __init__(self, params: TrainParams) -> None:
        self.params = params
        self.best_epoch, self.best_score, self.since = 0, None, 0
        self.best_weights: dict[str, Tensor] | None = None
        self.stop_reason = ""

    def update(self, record: EpochRecord, model: nn.Module) -> None:
        if self.params.val_fraction == 0:
            return
        lower = self.params.monitor == "val_loss"
        score, best = record.val_loss if lower else record.accuracy, self.best_score
        if best is None or (score < best if lower else score > best):
            self.best_epoch, self.best_score, self.since = record.epoch, score, 0
            if self.params.keep == "best":
                self.best_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
            return
        self.since += 1
        if self.params.patience and self.since >= self.params.patience:
            self.stop_reason = (
                f"stopped early: {self.params.monitor} did not improve for "
                f"{self.since} epochs (train.patience {self.params.patience})"
            )

    def state_dict(self) -> dict[str, object]:
        return {key: value for key, value in vars(self).items() if key != "params"}

    def load_state_dict(self, state: dict[str, object]) -> None:
        vars(self).update(state)


def log_epoch(record: EpochRecord, epochs: int, scored_on: str, seconds: float) -> None:
    """The epoch's line: loss, accuracy on the scoring split (test or val), time."""
    val = f", val loss {record.val_loss:.4f}" if scored_on == "val" else ""
    log.info(
        "epoch %d/%d: train loss %.4f, %s accuracy %.4f%s (%.2f s)",
        record.epoch, epochs, record.train_loss, scored_on, record.accuracy, val, seconds,
    )  # fmt: skip
