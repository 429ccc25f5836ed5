"""The train stage's working state after every epoch, tied to its run's ``run_key``: a
rerun with the same key resumes after the last complete epoch and writes the same bytes.
The file is the sha256 digest of its content, then the content; a checkpoint that is not
whole or not this run's is discarded, and training starts from epoch 1."""

from __future__ import annotations

import copy
import hashlib
import io
import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import torch

import mnist_pipeline
from mnist_pipeline.core.errors import PipelineError
from mnist_pipeline.core.io import file_digest, write_bytes
from mnist_pipeline.learning.params import TrainParams

log = logging.getLogger(__name__)
PACKAGE = Path(mnist_pipeline.__file__).parent
Row = TypeVar("Row")
OTHER_RUN = "it was made with other params, data or code"


def run_key(params: TrainParams, data_files: Iterable[Path]) -> str:
    """What a checkpoint must match to be resumed: params, data and code, hashed."""
    digest = hashlib.sha256(params.model_dump_json().encode())
    for path in data_files:
        digest.update(file_digest(path, "sha256").encode())
    for source in sorted(PACKAGE.rglob("*.py")):
        digest.update(str(source.relative_to(PACKAGE)).encode() + source.read_bytes())
    digest.update(torch.__version__.encode())
    return digest.hexdigest()


def read_state(path: Path) -> Any:
    """The state saved at ``path``, read only after its digest proves the content whole."""
    data = path.read_bytes()
    if hashlib.sha256(data[32:]).digest() != data[:32]:
        raise ValueError("its sha256 digest does not match its content (corrupt or edited)")
    return torch.load(io.BytesIO(data[32:]), map_location="cpu", weights_only=True)


def write_state(state: dict[str, Any], path: Path) -> None:
    """Digest and content in one rename; serialised in memory first, so a full disk is
    ``core.io``'s one-line write error, not one inside torch's zip writer."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_bytes(hashlib.sha256(buffer.getvalue()).digest() + buffer.getvalue(), path)


class Checkpoint:
    """One run's checkpoint file, valid for ``key`` only; only its ``owner`` (rank 0)
    writes, removes and warns."""

    def __init__(self, path: Path, key: str, owner: bool = True) -> None:
        self.path, self.key, self.owner = Path(path), key, owner

    def restore(
        self, parts: dict[str, Any], shuffle: torch.Generator, epochs: int, row: Callable[..., Row]
    ) -> list[Row]:
        """The saved history (each row as ``row``), ``parts``, ``shuffle`` and torch's RNG as
        saved; ``[]``, all of them untouched, without a whole checkpoint of this run."""
        folder = next(p for p in self.path.absolute().parents if p.exists())
        if self.path.is_dir() or not (folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)):
            why = "is a directory" if self.path.is_dir() else f"{folder} is no writable folder"
            raise PipelineError(f"--checkpoint {self.path}: {why}; give a file path in one")
        try:
            state = read_state(self.path)
        except FileNotFoundError:
            return []
        except Exception as err:  # whatever a damaged file raises: it cannot be resumed
            return self._discard(err)
        if not isinstance(state, dict) or state.get("key") != self.key:
            if self.owner:
                log.info("discarding checkpoint %s: %s", self.path, OTHER_RUN)
            self.remove()
            return []
        before = copy.deepcopy(_capture(parts, shuffle))
        try:  # all checked before any of it applies; a part that refuses its state undoes all
            history = _history(state["history"], epochs, row)
            if any(set(state[name]) != set(before[name]) for name in parts):
                raise ValueError("its parts are not this run's")
            if (where := _non_finite(state)) is not None:
                raise ValueError(f"{where} is not finite")
            _apply(state, parts, shuffle)
            return history
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as err:
            _apply(before, parts, shuffle)
            return self._discard(err)

    def save(self, parts: dict[str, Any], shuffle: torch.Generator, history: list[Any]) -> None:
        """Replace the checkpoint with ``parts``' state, the RNGs and the history rows."""
        if self.owner:
            state = _capture(parts, shuffle)
            write_state({**state, "history": history, "key": self.key}, self.path)

    def remove(self) -> None:
        if self.owner:
            self.path.unlink(missing_ok=True)

    def _discard(self, err: Exception) -> list[Any]:
        why = " ".join(str(err).split())[:300] or type(err).__name__  # one line
        if self.owner:
            log.warning("discarding checkpoint %s: %s; training starts at epoch 1", self.path, why)
        self.remove()
        return []


def _capture(parts: dict[str, Any], shuffle: torch.Generator) -> dict[str, Any]:
    state = {name: part.state_dict() for name, part in parts.items()}
    return state | {"shuffle": shuffle.get_state(), "torch_rng": torch.get_rng_state()}


def _apply(state: dict[str, Any], parts: dict[str, Any], shuffle: torch.Generator) -> None:
    for name, part in parts.items():
        part.load_state_dict(state[name])
    shuffle.set_state(state["shuffle"])
    torch.set_rng_state(state["torch_rng"])


def _history(rows: Any, epochs: int, row: Callable[..., Row]) -> list[Row]:
    """Saved rows as ``row``s, if they are the epochs 1, 2, ... (at most ``epochs``)."""
    if not isinstance(rows, list) or len(rows) > epochs:
        raise ValueError(f"its history does not fit train.epochs={epochs}")
    for epoch, saved in enumerate(rows, 1):
        if not (isinstance(saved, dict) and saved.get("epoch") == epoch):
            raise ValueError(f"history row {epoch} is no record of epoch {epoch}")
        if not all(v is None or isinstance(v, int | float) for v in saved.values()):
            raise ValueError(f"history row {epoch} holds a value that is no number")
    return [row(**saved) for saved in rows]


def _non_finite(value: Any, where: str = "") -> str | None:
    """The first place in ``value`` that holds a NaN or an infinity, or None."""
    if isinstance(value, dict | list | tuple):
        items = value.items() if isinstance(value, dict) else enumerate(value)
        return next(filter(None, (_non_finite(v, f"{where}.{k}") for k, v in items)), None)
    if isinstance(value, float | torch.Tensor) and not torch.isfinite(torch.as_tensor(value)).all():
        return where.lstrip(".")
    return None
