"""The train stage's working state after every epoch, tied to its run's ``run_key``: a
rerun with the same key resumes after the last complete epoch and writes the same bytes."""

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
from mnist_pipeline.learning.params import TrainParams

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
    """One run's checkpoint file, valid for ``key`` only; only its ``owner`` (rank 0)
    writes and removes it."""

    def __init__(self, path: Path, key: str, owner: bool = True) -> None:
        self.path, self.key, self.owner = Path(path), key, owner

    def load(self) -> dict[str, Any] | None:
        """The saved state for this key, or ``None`` (none saved, or another run's: discarded)."""
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            return None
        except Exception as err:
            state, why = None, f"unreadable ({type(err).__name__})"
        else:
            why = "it was made with other params, data or code"
        if isinstance(state, dict) and state.get("key") == self.key:
            return state
        log.info("discarding checkpoint %s: %s", self.path, why)
        self.remove()
        return None

    def save(self, state: dict[str, Any]) -> None:
        """Replace the checkpoint in one rename; serialised in memory first, so a full disk
        is ``core.io``'s one-line write error, not one inside torch's zip writer."""
        if self.owner:
            buffer = io.BytesIO()
            torch.save({**state, "key": self.key}, buffer)
            write_bytes(buffer.getvalue(), self.path)

    def remove(self) -> None:
        if self.owner:
            self.path.unlink(missing_ok=True)
