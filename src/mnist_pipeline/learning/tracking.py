"""Per-epoch progress of a training run: the live learning curve, a tqdm bar, log lines.

``epoch_tracker`` gives the ``on_epoch`` callback the train stage hands to
``training.train``. After every epoch it rewrites the per-epoch log
(``metrics/train_log.csv``: ``epoch, train_loss, test_accuracy`` or ``val_accuracy``)
atomically with the epochs so far, so ``dvc plots show`` and the DVC VS Code extension draw
the learning curves while the run is still going. That CSV is the one record of training
progress: the report and ``compare`` read it too. It holds no timestamps, so it is
byte-identical for the same params. When stderr is a terminal the tracker also draws a
tqdm bar over the epochs with the latest loss and accuracy; otherwise the training
module's one log line per epoch is all there is.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from mnist_pipeline.core.io import write_bytes, write_csv
from mnist_pipeline.learning.training import EpochRecord, history_frame


@contextmanager
def epoch_tracker(
    history_path: Path, epochs: int, scored_on: str
) -> Iterator[Callable[[EpochRecord], None]]:
    """``with epoch_tracker(log, epochs, "test") as track: train(..., on_epoch=track)``.

    Nothing is written until the first epoch ends, and a run that fails later (a diverged
    loss, an allocation error, SIGTERM) puts the previous log back: a failed train stage
    changes no tracked file.
    """
    before = history_path.read_bytes() if history_path.is_file() else None
    history: list[EpochRecord] = []
    bar = None
    if sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=epochs, unit="epoch", desc="train", file=sys.stderr)

    def track(record: EpochRecord) -> None:
        history.append(record)
        write_csv(history_frame(history, scored_on), history_path)
        if bar is not None:
            bar.set_postfix(loss=f"{record.train_loss:.4f}", acc=f"{record.accuracy:.4f}")
            bar.update(1)

    try:
        yield track
    except BaseException:
        if history and before is None:
            history_path.unlink(missing_ok=True)
        elif history:
            write_bytes(before, history_path)
        raise
    finally:
        if bar is not None:
            bar.close()
