"""The train stage's state after every epoch: the content's sha256 digest, then the content. A
rerun resumes from it, with the same bytes, only when it is whole and of this ``run_key``."""

from __future__ import annotations

import hashlib
import io
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from mnist_pipeline.core.errors import PipelineError
from mnist_pipeline.core.io import file_digest, write_bytes
from mnist_pipeline.learning.params import TrainParams

log = logging.getLogger(__name__)


def run_key(params: TrainParams, data_files: Iterable[Path]) -> str:
    """What a checkpoint must match to be resumed: params, data and code, hashed."""
    digest = hashlib.sha256(params.model_dump_json().encode())
    for path in data_files:
        digest.update(file_digest(path, "sha256").encode())
    package = Path(__file__).parents[1]  # mnist_pipeline
    for source in sorted([*package.rglob("*.py"), *package.rglob("*.npz")]):  # code, characters
        digest.update(str(source.relative_to(package)).encode() + source.read_bytes())
    digest.update(torch.__version__.encode())
    return digest.hexdigest()


def read_state(path: Path) -> Any:
    """The state saved at ``path``, loaded only after its digest proves the content whole."""
    data = path.read_bytes()
    if hashlib.sha256(data[32:]).digest() != data[:32]:
        raise ValueError("its sha256 digest does not match its content (corrupt or edited)")
    return torch.load(io.BytesIO(data[32:]), map_location="cpu", weights_only=True)


def write_state(state: dict[str, Any], path: Path) -> None:
    """Digest and content in one atomic write."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_bytes(hashlib.sha256(buffer.getvalue()).digest() + buffer.getvalue(), path)


class Checkpoint:
    """One run's checkpoint file; only its ``owner`` (rank 0) writes, removes and warns."""

    def __init__(self, path: Path, key: str, owner: bool = True) -> None:
        self.path, self.key, self.owner = Path(path), key, owner

    def restore(self, parts: dict[str, Any], shuffle: torch.Generator) -> list[dict[str, Any]]:
        """The saved history rows, all state restored; ``[]``, nothing touched, without a
        whole checkpoint of this run."""
        folder = next(p for p in self.path.absolute().parents if p.exists())
        if self.path.is_dir() or not (folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)):
            why = "is a directory" if self.path.is_dir() else f"{folder} is no writable folder"
            raise PipelineError(f"--checkpoint {self.path}: {why}; give a file path in one")
        try:
            state = read_state(self.path)
        except FileNotFoundError:
            return []
        except Exception as err:  # whatever a damaged or edited file raises: it cannot resume
            if self.owner:
                why = " ".join(str(err).split())[:300] or type(err).__name__  # one line
                log.warning(
                    "discarding checkpoint %s: %s; training starts at epoch 1", self.path, why
                )
            self.remove()
            return []
        if state["key"] != self.key:
            if self.owner:
                why = "it was made with other params, data or code"
                log.info("discarding checkpoint %s: %s", self.path, why)
            self.remove()
            return []
        for name, part in parts.items():
            part.load_state_dict(state[name])
        shuffle.set_state(state["shuffle"])
        torch.set_rng_state(state["torch_rng"])
        return state["history"]

    def save(self, parts: dict[str, Any], shuffle: torch.Generator, history: list[Any]) -> None:
        if self.owner:
            state = {name: part.state_dict() for name, part in parts.items()}
            state |= {"shuffle": shuffle.get_state(), "torch_rng": torch.get_rng_state()}
            write_state(state | {"history": history, "key": self.key}, self.path)

    def remove(self) -> None:
        if self.owner:
            self.path.unlink(missing_ok=True)
