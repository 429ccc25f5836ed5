"""Per-epoch progress of a training run: the live learning curve, a tqdm bar, log lines.

``EpochTracker`` is the ``on_epoch`` callback the train stage hands to
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
from pathlib import Path
from types import TracebackType

from mnist_pipeline.core.io import write_bytes, write_csv
from mnist_pipeline.learning.training import EpochRecord, history_frame


class EpochTracker:
    """Context manager: ``with EpochTracker(log, epochs, "test") as track: train(..., track)``.

    Nothing is written until the first epoch ends, and a run that fails later (a diverged
    loss, an allocation error, SIGTERM) puts the previous log back: a failed train stage
    changes no tracked file.
    """

    def __init__(self, history_path: Path, epochs: int, scored_on: str) -> None:
        self.history_path = Path(history_path)
        self.before = self.history_path.read_bytes() if self.history_path.is_file() else None
        self.scored_on = scored_on
        self.history: list[EpochRecord] = []
        self.bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=epochs, unit="epoch", desc="train", file=sys.stderr)

    def __call__(self, record: EpochRecord) -> None:
        self.history.append(record)
        write_csv(history_frame(self.history, self.scored_on), self.history_path)
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{record.train_loss:.4f}", acc=f"{record.accuracy:.4f}")
            self.bar.update(1)

    def __enter__(self) -> EpochTracker:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self.bar is not None:
            self.bar.close()
        if error is None or not self.history:
            return
        if self.before is None:
            self.history_path.unlink(missing_ok=True)
        else:
            write_bytes(self.before, self.history_path)
