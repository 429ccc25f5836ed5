"""safetensors files: the processed splits and the trained model's weights.

No pickle, and the bytes depend only on the data (see ``save_tensors``). Read and written
through safetensors' numpy API, so a stage that only moves data never imports torch.
"""

from __future__ import annotations

import errno
import json
import math
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mnist_pipeline.core.errors import PipelineError
from mnist_pipeline.core.io import atomic_path

_META_KEY = "mnist_pipeline"


def save_tensors(
    tensors: Mapping[str, Any], path: Path, metadata: Mapping[str, str] | None = None
) -> None:
    """Save arrays (numpy, or torch tensors: read through ``.numpy()``) with safetensors.

    No pickle, and the bytes depend only on the data: safetensors keeps metadata in a hash
    map whose order changes from process to process, so it is stored as one JSON string
    under a single key. Written through safetensors' numpy API, so no stage pays for
    importing torch to read or write a file (the bytes are the same either way).
    """
    from safetensors import SafetensorError
    from safetensors.numpy import save_file

    arrays = {
        name: np.ascontiguousarray(t.detach().cpu().numpy() if hasattr(t, "detach") else t)
        for name, t in tensors.items()
    }
    packed = {_META_KEY: json.dumps(dict(metadata or {}), sort_keys=True)}
    with atomic_path(path) as tmp:
        try:
            save_file(arrays, str(tmp), metadata=packed)
        except SafetensorError as err:  # it wraps the OSError, disk full included
            code = next((c for c, m in _SAFETENSORS_OS_ERRORS.items() if m in str(err)), None)
            if code is None:
                raise
            raise OSError(code, str(err)) from err


# safetensors wraps the OSError of a failed write in its own error: its message -> errno.
_SAFETENSORS_OS_ERRORS = {errno.ENOSPC: "No space left", errno.EFBIG: "File too large"}


# safetensors dtype names -> numpy (little-endian, as the format stores them).
_SAFETENSORS_DTYPES = {
    "F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2",
    "I8": "i1", "U8": "u1", "BOOL": "?",
}  # fmt: skip


def _open_tensors(path: Path) -> Any:
    """safetensors' own reader of ``path``: it checks the header (a JSON object within the
    file; each tensor's dtype and shape filling its bytes, the tensors back to back) and
    reads no data. Anything else is refused in one line, a pickle by name.

    The format is recognised by that header, never by the first byte: the header length's
    low byte can be anything (0x80, a pickle's first byte, for every length = 128 mod 256).
    """
    from safetensors import SafetensorError, safe_open

    if not path.is_file():
        raise PipelineError(f"{path}: file not found; run the stage that writes it")
    try:
        return safe_open(str(path), framework="numpy")
    except SafetensorError as err:
        with open(path, "rb") as handle:
            head = handle.read(2)
        if head[:1] == b"\x80" or head == b"PK":
            raise PipelineError(
                f"{path}: is a pickle/torch.save file, not safetensors; refusing to load it "
                "(pickle can run code). Delete it and rerun the stage that writes it"
            ) from err
        raise _unreadable_tensors(path, err) from err


def load_tensors(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Load a safetensors file as numpy arrays and its string metadata; refuse anything else.

    Each tensor is read straight into its array (``np.fromfile``): the peak memory is the
    data once (safetensors' own numpy loader copies out of a memory map: the data twice).
    """
    path = Path(path)
    with _open_tensors(path) as reader, open(path, "rb") as handle:
        metadata = _unpack_metadata(path, reader.metadata())
        (length,) = struct.unpack("<Q", handle.read(8))
        handle.seek(8 + length)  # the data: the tensors back to back, in offset order
        tensors = {}
        for name in reader.offset_keys():
            info = reader.get_slice(name)
            dtype, shape = _SAFETENSORS_DTYPES.get(info.get_dtype()), info.get_shape()
            if dtype is None:
                raise _unreadable_tensors(path, f"tensor {name!r} is {info.get_dtype()}")
            tensors[name] = np.fromfile(handle, dtype, math.prod(shape)).reshape(shape)
    return tensors, metadata


def _unreadable_tensors(path: Path, err: Exception | str) -> PipelineError:
    return PipelineError(
        f"{path}: not a readable safetensors file ({err}); rerun the stage that writes it"
    )


def _unpack_metadata(path: Path, packed: dict[str, str] | None) -> dict[str, str]:
    """The header's ``__metadata__`` (save_tensors packs it as JSON under one key)."""
    packed = packed or {}
    try:
        return json.loads(packed[_META_KEY]) if _META_KEY in packed else packed
    except ValueError as err:
        raise _unreadable_tensors(path, f"bad metadata: {err}") from err


def read_tensor_metadata(path: Path) -> dict[str, str]:
    """The string metadata of a safetensors file, from its header alone (no tensors read)."""
    with _open_tensors(Path(path)) as reader:
        return _unpack_metadata(Path(path), reader.metadata())
