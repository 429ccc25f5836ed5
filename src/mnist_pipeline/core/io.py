"""Every file format the pipeline reads or writes, and nothing else.

IDX (raw or gzip), YAML, JSON, CSV, safetensors, PNG and JPEG live here so that the other
modules deal only in arrays, tensors, dicts and figures. Every writer goes through
``atomic_path``: the data lands in a temp file in the destination directory and is
renamed into place only when complete, so an interrupted or failed stage never leaves a
half-written file that DVC or the next stage could mistake for a good one. The temp files
are private while being written (``mkstemp``: 0600, ``mkdtemp``: 0700); what lands gets the
modes a plain ``open``/``mkdir`` would give (0644 files and 0755 folders under the usual
umask 022), so a teammate or a web server can read the outputs.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import gzip
import hashlib
import json
import math
import os
import re
import shutil
import struct
import tempfile
import zlib
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml

from mnist_pipeline.core.errors import PipelineError

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

# IDX type codes (third header byte) -> numpy big-endian dtype.
_IDX_DTYPES: dict[int, str] = {
    0x08: "u1",
    0x09: "i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}
_META_KEY = "mnist_pipeline"
# The most IDX data a dataset may hold (its four files together): a little above the
# 210k-image set whose stages were measured under the 1.5 GB RSS budget (README, Bigger
# data). Reads stop at the declared size + 1 byte, so a small .gz that inflates to
# gigabytes costs no more than the header declares.
MAX_IDX_BYTES = 160 * 2**20
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def _write_error(path: Path, err: OSError, folder: bool = False, written: int = 0) -> PipelineError:
    """One line for a failed write: what is in the way, and how to clear it. Disk full: the
    output (not our temp sibling), its folder, the space free and the ``written`` bytes."""
    if err.errno in _NO_SPACE:
        shown = Path(*(re.sub(r"^\.(.+)\.[a-z0-9_]{8}\.tmp$", r"\1", p) for p in path.parts))
        existing = next((p for p in path.parents if p.exists()), Path("."))
        return PipelineError(
            f"cannot write {shown}: no space left on device in {shown.parent} "
            f"({shutil.disk_usage(existing).free / 2**20:.1f} MiB free, the file needs more than "
            f"the {written / 2**20:.1f} MiB written); free some space there and rerun the stage"
        )
    files = [parent for parent in reversed(path.parents) if parent.is_file()]
    if files:
        why = f"{files[0]} is a file, not a directory; remove it or choose another path"
    elif path.is_dir() and not folder:
        why = "a directory is in the way; remove it or choose another path"
    elif folder and path.exists() and not path.is_dir():
        why = "a file is in the way; remove it or choose another path"
    else:
        why = f"{err.strerror or err}; make {path.parent} writable or choose another path"
    return PipelineError(f"cannot write {path}: {why}")


def _clear_stale(path: Path) -> None:
    """Remove ``.NAME.*.tmp`` siblings that a killed run (SIGKILL, power loss) left behind.

    Only one run of a stage writes an output at a time (DVC's lock), so any such sibling
    belongs to a run that is gone.
    """
    pattern = f".{glob.escape(path.name)}.{'[a-z0-9_]' * 8}.tmp"  # as tempfile names them
    for old in glob.glob(pattern, root_dir=path.parent):
        _remove(path.parent / old)


def _remove(path: Path) -> None:
    """Remove a file or a folder with everything in it (never what a link points to)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _temp_file(**names: str) -> str:
    fd, name = tempfile.mkstemp(**names)
    os.close(fd)
    return name


@contextlib.contextmanager
def atomic_path(path: Path, folder: bool = False) -> Iterator[Path]:
    """A temp file (or folder) next to ``path``, renamed onto ``path`` only when the block
    succeeds."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _clear_stale(path)
        make = tempfile.mkdtemp if folder else _temp_file
        tmp = Path(make(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    except OSError as err:
        raise _write_error(path, err, folder) from err
    try:
        try:
            yield tmp
        except OSError as err:
            if err.errno not in _NO_SPACE:
                raise
            written = tmp.stat().st_size if tmp.is_file() else 0
            raise _write_error(path, err, written=written) from err
        try:
            umask = os.umask(0o022)  # read it by setting it, then restore it at once
            os.umask(umask)
            os.chmod(tmp, (0o777 if folder else 0o666) & ~umask)
            if folder and path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            os.replace(tmp, path)  # a file in the way of a folder fails here, and is left alone
        except OSError as err:
            raise _write_error(path, err, folder) from err
    finally:
        _remove(tmp)


def atomic_dir(path: Path) -> contextlib.AbstractContextManager[Path]:
    """A temp folder next to ``path``, swapped in for ``path`` only when the block succeeds."""
    return atomic_path(path, folder=True)


def write_text(text: str, path: Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _non_finite(obj: Any, key: str = "") -> str | None:
    """The first ``key.path = nan`` in a JSON-bound object, or None."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return f"{key.lstrip('.') or 'the value'} = {obj}"
    items = (
        obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else []
    )
    return next(filter(None, (_non_finite(v, f"{key}.{k}") for k, v in items)), None)


def write_json(obj: Any, path: Path) -> None:
    """Stable JSON (sorted keys, 2-space indent, trailing newline) so diffs stay small.

    NaN and Infinity are not JSON (strict parsers reject them), so they are refused.
    """
    bad = _non_finite(obj)
    if bad is not None:
        raise PipelineError(
            f"cannot write {path}: {bad}, which JSON cannot hold; the numbers behind it "
            "overflowed: check the inputs of the stage that writes it (e.g. rerun train)"
        )
    write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n", path)


RERUN = "; rerun the stage that writes it"


def _read_text(path: Path, missing: str = "run the stage that writes it") -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise PipelineError(f"{path}: file not found; {missing}") from err
    except UnicodeDecodeError as err:
        raise PipelineError(
            f"{path}: not UTF-8 text (byte 0x{err.object[err.start]:02x} at offset "
            f"{err.start}); save it as UTF-8"
        ) from err
    except OSError as err:  # a directory, no permission, ...
        raise PipelineError(
            f"{path}: cannot read it ({err.strerror or err}); point to a readable file"
        ) from err


def read_json(path: Path) -> Any:
    try:
        return json.loads(_read_text(path), object_pairs_hook=_unique_pairs)
    except json.JSONDecodeError as err:
        raise PipelineError(
            f"{path}: not valid JSON ({err.msg} at line {err.lineno}){RERUN}"
        ) from err
    except KeyError as err:  # from _unique_pairs
        raise PipelineError(f"{path}: duplicate key {err}; keep only one") from err


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON ``object_pairs_hook`` that refuses a key given twice (json keeps the last)."""
    out = dict(pairs)
    if len(out) < len(pairs):  # name the key given twice
        raise KeyError(next(key for key, n in Counter(k for k, _ in pairs).items() if n > 1))
    return out


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses duplicate mapping keys (PyYAML keeps the last one
    silently; DVC rejects such a file, so a stage run directly must too)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        keys = [self.construct_object(key_node, deep=True) for key_node, _ in node.value]
        for index, key in enumerate(keys):
            if key in keys[:index]:  # by equality: an unhashable key is left to the base class
                mark = node.value[index][0].start_mark
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", mark)
        return super().construct_mapping(node, deep)


def read_yaml(path: Path) -> Any:
    text = _read_text(path, missing="check the path")
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", "") or ""
        if problem.startswith("duplicate key"):
            raise PipelineError(f"{path}: {problem}{where}; keep only one") from err
        raise PipelineError(f"{path}: not valid YAML{where}: fix the syntax") from err


def write_csv(frame: pd.DataFrame, path: Path, index: bool = False) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=index, lineterminator="\n")


def read_csv(path: Path, dtype: Any = None) -> pd.DataFrame:
    return parse_csv(_read_text(path), str(path), dtype=dtype, fix=RERUN)


def parse_csv(
    text: str, source: str, index_col: int | None = None, dtype: Any = None, fix: str = ""
) -> pd.DataFrame:
    """A CSV from a string (e.g. ``git show REV:path``), read as ``read_csv`` reads files."""
    import io

    import pandas as pd

    try:
        return pd.read_csv(
            io.StringIO(text), index_col=index_col, dtype=dtype, keep_default_na=False
        )
    except ValueError as err:  # pandas' ParserError and EmptyDataError included
        raise PipelineError(f"{source}: not a readable CSV file ({err}){fix}") from err


def save_figure(fig: Figure, path: Path, dpi: int = 100) -> None:
    """PNG without the matplotlib version stamp, so the bytes depend only on the data.

    Figures are plain ``Figure`` objects that pyplot never tracks: nothing to close."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, metadata={"Software": None})


# --------------------------------------------------------------------------- checksums


def file_digest(path: Path, algorithm: str) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, algorithm).hexdigest()


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
            magic = handle.read(4)
            if len(magic) < 4:
                raise PipelineError(
                    f"{path}: too short to be an IDX file ({len(magic)} bytes); "
                    "fetch the file again"
                )
            zero, type_code, ndim = struct.unpack(">HBB", magic)
            if zero != 0 or type_code not in _IDX_DTYPES or ndim == 0:
                raise PipelineError(
                    f"{path}: bad IDX magic number 0x{magic.hex()} (expected 0x00000801 for "
                    "labels or 0x00000803 for images); not an IDX file: fetch the file again"
                )
            dims = handle.read(4 * ndim)
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
    return magic + dims + payload, 4 + len(dims), dtype, shape


def read_idx(path: Path) -> np.ndarray:
    """Parse an IDX file (raw or gzip) into an array of the declared dtype and shape."""
    content, header, dtype, shape = read_idx_bytes(path)
    return np.frombuffer(content, dtype=dtype, offset=header).reshape(shape).copy()


def write_bytes(content: bytes, path: Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(content)


def write_idx(array: np.ndarray, path: Path) -> None:
    """Write a uint8 array as an uncompressed IDX file."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    write_bytes(header + array.tobytes(), path)


# ------------------------------------------------------------------------- safetensors


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
            if "No space left" not in str(err):
                raise
            raise OSError(errno.ENOSPC, str(err)) from err


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
    data once. safetensors' own numpy loader copies out of a memory map, which counts the
    data twice (1.25 GB for 200k images, over the stages' budget).
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


# ------------------------------------------------------------------------------ images

IMAGE_FORMATS = ("PNG", "JPEG")
# Pixels read_image decodes at most: a 64-megapixel photo is ~250 MB as float32. The
# header says the size, so a decompression bomb (a small file that decodes to gigabytes)
# is refused before any pixel is decoded.
MAX_IMAGE_PIXELS = 64_000_000


def read_image(path: Path, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """A PNG or JPEG as grayscale ``[H, W]`` float32 in 0..255, upright, alpha over white.

    The size in the header is checked against ``max_pixels`` before decoding; the EXIF
    orientation of phone photos is applied; transparent pixels count as white paper.
    """
    import warnings

    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    fix = "give a PNG or JPEG of one digit or garment"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path, formats=IMAGE_FORMATS) as image:
                if math.prod(image.size) > max_pixels:
                    raise Image.DecompressionBombError("{}×{}".format(*image.size))
                image.load()  # decode now, inside the error handling below
                upright = ImageOps.exif_transpose(image)
                if upright.mode in ("RGBA", "LA", "PA", "P") or "transparency" in upright.info:
                    rgba = upright.convert("RGBA")
                    upright = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba)
                gray = upright.convert("L")  # ITU-R 601-2 luma
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        # Ours above, or Pillow's own check (it runs in Image.open for huge sizes).
        raise PipelineError(
            f"{path}: image larger than the {max_pixels:,} pixels read here ({err}); "
            "crop or shrink it"
        ) from err
    except UnidentifiedImageError as err:
        raise PipelineError(f"{path}: not a PNG or JPEG image; {fix}") from err
    except FileNotFoundError as err:
        raise PipelineError(f"{path}: file not found; {fix}") from err
    except (OSError, SyntaxError, ValueError) as err:  # truncated or corrupt data
        raise PipelineError(f"{path}: cannot decode the image ({err}); {fix}") from err
    return np.asarray(gray, dtype=np.float32)


def write_png(image: np.ndarray, path: Path) -> None:
    """A ``[H, W]`` float image in [0, 1] as an 8-bit grayscale PNG (0 = black)."""
    from PIL import Image

    pixels = np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)
    with atomic_path(path) as tmp:
        Image.fromarray(pixels).save(tmp, format="PNG")
