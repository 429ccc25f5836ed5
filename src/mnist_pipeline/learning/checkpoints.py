"""The train stage's working state, kept after every epoch so that a killed run resumes.

A checkpoint holds everything the next epoch depends on (weights, optimizer state,
schedule, both random generators, the log so far, the best-epoch bookkeeping) and is tied
to a ``run_key``: a hash of the ``train`` params, the processed data and the package's code.
A rerun with the same key resumes after the last complete epoch and writes the same bytes
as an uninterrupted run; a checkpoint with another key is discarded, never resumed. It
lives outside the tracked outputs (``.dvc/tmp/``), is replaced atomically and is removed
when the stage succeeds.
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

import mnist_pipeline
from mnist_pipeline.core.io import file_digest, write_bytes
from mnist_pipeline.learning.config import TrainParams

log = logging.getLogger(__name__)
PACKAGE = Path(mnist_pipeline.__file__).parent


def run_key(params: TrainParams, data_files: Iterable[Path]) -> str:
    """What a checkpoint must match to be resumed: params, data and code, hashed."""
    digest = hashlib.sha256(params.model_dump_json().encode())
    for path in data_files:
        digest.update(file_digest(path, "sha256").encode())
    for source in sorted(PACKAGE.rglob("*.py")):
        digest.update(str(source.relative_to(PACKAGE)).encode() + source.read_bytes())
    digest.update(torch.__version__.encode())
    return digest.hexdigest()


class Checkpoint:
    """One run's checkpoint file at ``path``, valid for ``key`` only.

    ``owner``: whether this process may write and remove it (rank 0 of a torchrun job);
    the other ranks only read it.
    """

    def __init__(self, path: Path, key: str, owner: bool = True) -> None:
        self.path, self.key, self.owner = Path(path), key, owner

    def load(self) -> dict[str, Any] | None:
        """The saved state for this key, or ``None`` (none saved, or another run's: discarded)."""
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            return None
        except Exception as err:
            log.info("discarding checkpoint %s: unreadable (%s)", self.path, type(err).__name__)
            self.remove()
            return None
        if not isinstance(state, dict) or state.get("key") != self.key:
            log.info(
                "discarding checkpoint %s: it was made with other params, data or code",
                self.path,
            )
            self.remove()
            return None
        return state

    def save(self, state: dict[str, Any]) -> None:
        """Replace the checkpoint with ``state`` in one rename (a kill leaves the old one).

        Serialised in memory first, so a full disk or the file-size limit is the one-line
        write error of ``core.io``, not an error inside torch's zip writer."""
        if not self.owner:
            return
        buffer = io.BytesIO()
        torch.save({**state, "key": self.key}, buffer)
        write_bytes(buffer.getvalue(), self.path)

    def remove(self) -> None:
        if self.owner:
            self.path.unlink(missing_ok=True)
