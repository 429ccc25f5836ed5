"""A tqdm bar over the epochs when stderr is a terminal (else the training log's lines).

It writes no file, so a killed run changes no tracked file.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from mnist_pipeline.learning.training import EpochRecord


@contextmanager
def epoch_tracker(epochs: int) -> Iterator[Callable[[EpochRecord], None]]:
    """``with epoch_tracker(epochs) as track: train(..., on_epoch=track)``."""
    if not sys.stderr.isatty():
        yield lambda record: None
        return
    from tqdm import tqdm

    with tqdm(total=epochs, unit="epoch", desc="train", file=sys.stderr) as bar:

        def track(record: EpochRecord) -> None:
            bar.n = record.epoch - 1  # a resumed run starts part-way
            bar.set_postfix(loss=f"{record.train_loss:.4f}", acc=f"{record.accuracy:.4f}")
            bar.update(1)

        yield track
