"""Per-epoch progress of a training run on the terminal: a tqdm bar and log lines.

``epoch_tracker`` gives the ``on_epoch`` callback the train stage hands to
``training.train``: a tqdm bar over the epochs when stderr is a terminal, else the training
module's one log line per epoch. It writes no file, so a killed run changes no tracked file.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from mnist_pipeline.learning.training import EpochRecord


@contextmanager
def epoch_tracker(epochs: int) -> Iterator[Callable[[EpochRecord], None]]:
    """``with epoch_tracker(epochs) as track: train(..., on_epoch=track)``."""
    bar = None
    if sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=epochs, unit="epoch", desc="train", file=sys.stderr)

    def track(record: EpochRecord) -> None:
        if bar is not None:
            bar.n = record.epoch - 1  # a resumed run starts part-way
            bar.set_postfix(loss=f"{record.train_loss:.4f}", acc=f"{record.accuracy:.4f}")
            bar.update(1)

    try:
        yield track
    finally:
        if bar is not None:
            bar.close()
