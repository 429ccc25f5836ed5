"""Each epoch's record: shown (``Progress``), judged (``Selection``), written to the train log
(``history_csv``) and read back checked (``read_history``, without torch: the report's)."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mnist_pipeline.core.io import read_csv, read_rows

if TYPE_CHECKING:
    import pandas as pd
    from torch import Tensor, nn

    from mnist_pipeline.learning.params import TrainParams

log = logging.getLogger("mnist_pipeline.train")
T = TypeVar("T")


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


class Progress:
    """On a terminal a tqdm bar over the minibatches, elsewhere (DVC, CI) a line at least every
    ``every`` seconds of a long epoch; and a line per epoch."""

    def __init__(self, epochs: int, every: float = 10.0, bar: bool | None = None) -> None:
        self.epochs, self.every = epochs, every
        self.terminal = sys.stderr.isatty() if bar is None else bar
        self.bar: Any = None

    def start(self, epoch: int, steps: int) -> None:
        self.epoch, self.steps, self.step = epoch, steps, 0
        self.started = self.shown = time.monotonic()
        if self.terminal and self.bar is None:
            from tqdm import tqdm

            total = steps * (self.epochs - epoch + 1)
            self.bar = tqdm(total=total, unit="batch", desc="train", file=sys.stderr)

    def tick(self, value: T) -> T:
        """After each minibatch; passes ``value`` through."""
        self.step += 1
        now = time.monotonic()
        if self.bar is not None:
            self.bar.update(1)
        elif now - self.shown >= self.every and self.step < self.steps:
            self.shown = now
            left = (now - self.started) / self.step * (self.steps - self.step)
            log.info(
                "epoch %d/%d: batch %d/%d, %.1f batches/s, about %.0f s left in this epoch",
                self.epoch, self.epochs, self.step, self.steps,
                self.step / (now - self.started), left,
            )  # fmt: skip
        return value

    def done(self, record: EpochRecord, scored_on: str, seconds: float) -> None:
        """The epoch's line: loss, accuracy on the scoring split (test or val), time."""
        val = f", val loss {record.val_loss:.4f}" if scored_on == "val" else ""
        line = (
            f"epoch {record.epoch}/{self.epochs}: train loss {record.train_loss:.4f}, "
            f"{scored_on} accuracy {record.accuracy:.4f}{val} ({seconds:.2f} s)"
        )
        if self.bar is None:
            log.info(line)
        else:
            self.bar.write(line, file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
