"""Per-epoch progress of a training run: dvclive files, a tqdm bar, log lines.

``EpochTracker`` is the ``on_epoch`` callback the train stage hands to
``training.train``. Each epoch it logs ``train/loss`` and ``test/accuracy`` (or
``val/accuracy``) with dvclive — ``dvclive/metrics.json`` and
``dvclive/plots/metrics/**.tsv``, what ``dvc exp show`` and the DVC VS Code extension show
while a run is in progress — with ``step`` = epoch and no timestamps, so the files are
byte-identical for the same params. When stderr is a terminal it also draws a tqdm bar over
the epochs with the latest loss and accuracy; otherwise the training module's one log line
per epoch is all there is.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import TracebackType
from typing import Any

from mnist_pipeline.learning.training import EpochRecord


def _live(live_dir: Path) -> Any:
    """A dvclive ``Live`` that also works in a git repo with no commit yet.

    dvclive 3.x asks git for HEAD while linking the run to DVC and fails with
    ``SCMError("Empty git repo")`` before the first commit (its own guard for that case
    comes one line too late). There is no experiment to link to then, so the run logs
    files only — exactly what the pipeline needs from it.
    """
    from dvclive import Live
    from scmrepo.exceptions import SCMError

    class _FilesOnlyBeforeFirstCommit(Live):
        def _init_dvc(self) -> None:
            try:
                super()._init_dvc()
            except SCMError:
                self._dvc_file = "dvc.yaml"

    # save_dvc_exp/dvcyaml off: the pipeline's dvc.yaml owns the stage; dvclive only
    # writes its metric files (it must never rewrite dvc.yaml or commit experiments).
    return _FilesOnlyBeforeFirstCommit(
        dir=str(live_dir), save_dvc_exp=False, dvcyaml=None, report=None
    )


class EpochTracker:
    """Context manager: ``with EpochTracker(dir, epochs, "test") as track: train(..., track)``."""

    def __init__(self, live_dir: Path, epochs: int, scored_on: str) -> None:
        self.live = _live(live_dir)
        self.scored_on = scored_on
        self.bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=epochs, unit="epoch", desc="train", file=sys.stderr)

    def __call__(self, record: EpochRecord) -> None:
        self.live.step = record.epoch
        self.live.log_metric("train/loss", round(record.train_loss, 6))
        self.live.log_metric(f"{self.scored_on}/accuracy", round(record.accuracy, 6))
        self.live.make_summary()
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
        self.live.end()
