"""The IDX file format of MNIST and its kin: a magic number, the shape, then the data.

Reads raw or gzip files and never more than the header declares, so neither a gzip bomb
nor a lying header can exhaust memory.
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mnist_pipeline.core.errors import PipelineError
from mnist_pipeline.core.io import write_bytes

# IDX type codes (third header byte) -> numpy big-endian dtype.
_IDX_DTYPES = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
# The most IDX data a dataset's four files may hold together: a little above the largest
# set whose stages fit their memory budget.
MAX_IDX_BYTES = 160 * 2**20


def read_idx_header(
    read: Callable[[int], bytes], path: Path | str, limit: int = MAX_IDX_BYTES
) -> tuple[bytes, np.dtype, tuple[int, ...], int]:
    """The checked IDX header read through ``read``: ``(header bytes, dtype, shape, payload
    bytes it declares)``; a declared payload above ``limit`` is refused before it is read."""
    magic = read(4)
    if len(magic) < 4:
        raise PipelineError(
            f"{path}: too short to be an IDX file ({len(magic)} bytes); fetch the file again"
        )
    zero, type_code, ndim = struct.unpack(">HBB", magic)
    if zero != 0 or type_code not in _IDX_DTYPES or ndim == 0:
        raise PipelineError(
            f"{path}: bad IDX magic number 0x{magic.hex()} (expected 0x00000801 for "
            "labels or 0x00000803 for images); not an IDX file: fetch the file again"
        )
    dims = read(4 * ndim)
    if len(dims) < 4 * ndim:
        raise PipelineError(f"{path}: truncated IDX header; fetch the file again")
    shape = struct.unpack(f">{ndim}I", dims)
    dtype = np.dtype(_IDX_DTYPES[type_code])
    expected = math.prod(shape) * dtype.itemsize  # a Python int: never overflows
    if expected > limit:
        raise PipelineError(
            f"{path}: IDX header declares shape {list(shape)} ({expected:,} bytes), "
            f"over the {MAX_IDX_BYTES // 2**20} MiB a dataset's four files may hold "
            f"together ({limit:,} bytes left for this one), the limit that keeps every "
            "stage within its memory budget; fetch the right file or split the dataset"
        )
    return magic + dims, dtype, shape, expected


def read_idx_bytes(
    path: Path, limit: int = MAX_IDX_BYTES
) -> tuple[bytes, int, np.dtype, tuple[int, ...]]:
    """The whole decompressed IDX file, its payload exactly the declared size: ``(content,
    header_len, dtype, shape)``; reads at most the declared size + 1 byte."""
    try:
        with open(path, "rb") as raw:
            handle = gzip.GzipFile(fileobj=raw) if raw.peek(2)[:2] == b"\x1f\x8b" else raw
            head, dtype, shape, expected = read_idx_header(handle.read, path, limit)
            payload = handle.read(expected + 1)
    except FileNotFoundError as err:
        raise PipelineError(f"{path}: file not found; rerun the download stage") from err
    except (OSError, EOFError, zlib.error) as err:
        raise PipelineError(
            f"{path}: corrupt or truncated gzip data ({err}); fetch it again"
        ) from err
    if len(payload) != expected:
        state = "truncated" if len(payload) < expected else "has trailing bytes"
        held = f"{len(payload)}" if len(payload) < expected else "more"
        raise PipelineError(
            f"{path}: IDX data {state}: header declares shape {list(shape)} "
            f"({expected} bytes) but the file holds {held}; fetch the file again"
        )
    return head + payload, len(head), dtype, shape


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (raw or gzip) as an array of its declared dtype and shape."""
    content, header, dtype, shape = read_idx_bytes(path)
    return np.frombuffer(content, dtype=dtype, offset=header).reshape(shape).copy()


def write_idx(array: np.ndarray, path: Path) -> None:
    """A uint8 array as an uncompressed IDX file."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(f">HBB{array.ndim}I", 0, 0x08, array.ndim, *array.shape)
    write_bytes(header + array.tobytes(), path)
