"""safetensors files (the processed splits, the trained model): no pickle, bytes that depend
only on the data, numpy arrays so a stage that only moves data needs no torch."""

from __future__ import annotations

import json
import math
import os
import re
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mnist_pipeline.core.errors import PipelineError
from mnist_pipeline.core.io import atomic_path

_META_KEY = "mnist_pipeline"
# safetensors dtype names -> numpy (little-endian, as the format stores them).
_DTYPES = {
    "F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2",
    "I8": "i1", "U8": "u1", "BOOL": "?",
}  # fmt: skip


def save_tensors(
    tensors: Mapping[str, Any], path: Path, metadata: Mapping[str, str] | None = None
) -> None:
    """Save numpy arrays or torch tensors; the metadata goes as one JSON string under one
    key, since safetensors stores it in a map whose order changes between processes."""
    from safetensors import SafetensorError
    from safetensors.numpy import save_file

    arrays = {
        name: np.asarray(t.detach().cpu().numpy() if hasattr(t, "detach") else t, order="C")
        for name, t in tensors.items()
    }
    packed = {_META_KEY: json.dumps(dict(metadata or {}), sort_keys=True)}
    with atomic_path(path) as tmp:  # written from the arrays: no second copy in memory
        try:
            save_file(arrays, str(tmp), metadata=packed)
        except SafetensorError as err:  # its wrapping of a failed write: the OSError again
            code = re.search(r"\(os error (\d+)\)", str(err))
            if code is None:
                raise
            raise OSError(int(code[1]), os.strerror(int(code[1]))) from err


def _open(path: Path) -> Any:
    """safetensors' reader of ``path``: it checks the header, reads no data, runs no pickle."""
    from safetensors import SafetensorError, safe_open

    if not path.is_file():
        raise PipelineError(f"{path}: file not found; run the stage that writes it")
    try:
        return safe_open(str(path), framework="numpy")
    except SafetensorError as err:
        raise _unreadable(path, err) from err


def _unreadable(path: Path, why: object) -> PipelineError:
    return PipelineError(
        f"{path}: not a readable safetensors file ({why}); rerun the stage that writes it"
    )


def read_tensor_metadata(path: Path) -> dict[str, str]:
    """The string metadata of a safetensors file, from its header alone."""
    path = Path(path)
    with _open(path) as reader:
        packed = reader.metadata() or {}
    try:
        return json.loads(packed[_META_KEY]) if _META_KEY in packed else packed
    except ValueError as err:
        raise _unreadable(path, f"bad metadata: {err}") from err


def load_tensors(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """A safetensors file's arrays (read straight into them: no second copy) and metadata."""
    path, tensors = Path(path), {}
    with _open(path) as reader, open(path, "rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        handle.seek(8 + length)  # the tensors back to back, in offset order
        for name in reader.offset_keys():
            info = reader.get_slice(name)
            dtype, shape = _DTYPES.get(info.get_dtype()), info.get_shape()
            if dtype is None:
                raise _unreadable(path, f"tensor {name!r} is {info.get_dtype()}")
            tensors[name] = np.fromfile(handle, dtype, math.prod(shape)).reshape(shape)
    return tensors, read_tensor_metadata(path)
