"""The IDX file format of MNIST and its kin: a magic number, the shape, then the data.

Reads raw or gzip files, checks the header against the payload and never reads more
than the header declares, so a gzip bomb or a lying header cannot exhaust memory.
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
_IDX_DTYPES: dict[int, str] = {
    0x08: "u1",
    0x09: "i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}
# The most IDX data a dataset may hold (its four files together): a little above the
# largest set whose stages fit the 1.5 GB RSS budget. Reads stop at the declared size +
# 1 byte, so a small .gz that inflates to gigabytes costs no more than the header declares.
MAX_IDX_BYTES = 160 * 2**20


def read_idx_header(
    read: Callable[[int], bytes], path: Path | str, limit: int = MAX_IDX_BYTES
) -> tuple[bytes, np.dtype, tuple[int, ...], int]:
    """An IDX header read through ``read`` (a file's or a download's), checked:
    ``(header bytes, dtype, shape, payload bytes it declares)``.

    Checks the magic number (two zero bytes, a known type code, ndim >= 1) and refuses a
    declared payload above ``limit`` before any of it is read.
    """
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
    """The whole (decompressed) IDX file, checked: ``(content, header_len, dtype, shape)``.

    Checks the magic number (two zero bytes, a known type code, ndim >= 1) and that the
    payload is exactly the size the header declares. Reads at most the declared size + 1
    byte, and refuses a declared size above ``limit`` (what is left of ``MAX_IDX_BYTES``
    for the dataset): neither a gzip bomb nor a
    header claiming ``[2**31, 2**31, 4]`` can exhaust memory.
    """
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
    """Parse an IDX file (raw or gzip) into an array of the declared dtype and shape."""
    content, header, dtype, shape = read_idx_bytes(path)
    return np.frombuffer(content, dtype=dtype, offset=header).reshape(shape).copy()


def write_idx(array: np.ndarray, path: Path) -> None:
    """Write a uint8 array as an uncompressed IDX file."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    write_bytes(header + array.tobytes(), path)
