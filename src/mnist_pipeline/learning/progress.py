"""A run's progress: on a terminal a tqdm bar over the minibatches (rate, time left), elsewhere
(DVC, CI) a line at least every ``every`` seconds of a long epoch; and a line per epoch."""

from __future__ import annotations

import logging
import sys
import time
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from mnist_pipeline.learning.history import EpochRecord

log = logging.getLogger("mnist_pipeline.train")
T = TypeVar("T")


class Progress:
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
