"""The IDX file format of MNIST and its kin, read never further than the header declares and one
byte, so neither a gzip bomb, an endless download nor a lying header can exhaust memory."""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from mnist_pipeline.core.errors import PipelineError
from mnist_pipeline.core.io import write_bytes

# IDX type codes (third header byte) -> numpy big-endian dtype.
_IDX_DTYPES = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
# The most IDX data a dataset's four files may hold together: a little above the largest
# set whose stages fit their memory budget.
MAX_IDX_BYTES = 160 * 2**20


def read_idx_bytes(
    stream: Any, where: object, limit: int = MAX_IDX_BYTES
) -> tuple[bytes, int, np.dtype, tuple[int, ...]]:
    """``(content, header length, dtype, shape)`` of ``stream`` (raw, or gzip by its first
    bytes), decompressed; a declared payload over ``limit`` bytes is refused unread."""
    try:
        data = gzip.GzipFile(fileobj=stream) if stream.peek(2)[:2] == b"\x1f\x8b" else stream
        magic = data.read(4)
        if len(magic) < 4:
            raise PipelineError(
                f"{where}: too short to be an IDX file ({len(magic)} bytes); fetch the file again"
            )
        zero, type_code, ndim = struct.unpack(">HBB", magic)
        if zero != 0 or type_code not in _IDX_DTYPES or ndim == 0:
            raise PipelineError(
                f"{where}: bad IDX magic number 0x{magic.hex()} (expected 0x00000801 for "
                "labels or 0x00000803 for images); not an IDX file: fetch the file again"
            )
        dims = data.read(4 * ndim)
        if len(dims) < 4 * ndim:
            raise PipelineError(f"{where}: truncated IDX header; fetch the file again")
        shape = struct.unpack(f">{ndim}I", dims)
        dtype = np.dtype(_IDX_DTYPES[type_code])
        expected = math.prod(shape) * dtype.itemsize  # a Python int: never overflows
        if expected > limit:
            raise PipelineError(
                f"{where}: IDX header declares shape {list(shape)} ({expected:,} bytes), "
                f"over the {MAX_IDX_BYTES // 2**20} MiB a dataset's four files may hold "
                f"together ({limit:,} bytes left for this one), the limit that keeps every "
                "stage within its memory budget; fetch the right file or split the dataset"
            )
        payload = data.read(expected + 1)
    except (gzip.BadGzipFile, EOFError, zlib.error) as err:
        raise PipelineError(
            f"{where}: corrupt or truncated gzip data ({err}); fetch it again"
        ) from err
    if len(payload) != expected:
        state = "truncated" if len(payload) < expected else "has trailing bytes"
        held = f"{len(payload)}" if len(payload) < expected else "more"
        raise PipelineError(
            f"{where}: IDX data {state}: header declares shape {list(shape)} "
            f"({expected} bytes) but the file holds {held}; fetch the file again"
        )
    return magic + dims + payload, len(magic + dims), dtype, shape


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (raw or gzip) as an array of its declared dtype and shape."""
    try:
        with open(path, "rb") as stream:
            content, header, dtype, shape = read_idx_bytes(stream, path)
    except FileNotFoundError as err:
        raise PipelineError(f"{path}: file not found; rerun the download stage") from err
    except OSError as err:  # a directory, no permission, ...
        raise PipelineError(f"{path}: cannot read it ({err.strerror or err})") from err
    return np.frombuffer(content, dtype=dtype, offset=header).reshape(shape).copy()


def write_idx(array: np.ndarray, path: Path) -> None:
    """A uint8 array as an uncompressed IDX file."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(f">HBB{array.ndim}I", 0, 0x08, array.ndim, *array.shape)
    write_bytes(header + array.tobytes(), path)
