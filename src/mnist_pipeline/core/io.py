"""Outputs written beside their place and renamed into it together, once all are complete;
text, JSON and CSV reads bounded in size, so an endless file is cheap (YAML: ``params``)."""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import json
import os
import re
import shutil
import signal
import tempfile
from collections.abc import Iterator
from io import StringIO
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import TypeAdapter, ValidationError

from mnist_pipeline.core.errors import PipelineError, one_line

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

RERUN = "; rerun the stage that writes it"
# Far above any real file (a 70,000-image predictions.csv included); reads stop one byte past.
MAX_TEXT_BYTES = {"YAML": 4 * 2**20, "JSON": 16 * 2**20, "CSV": 128 * 2**20}
_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)  # disk full, quota, ulimit -f
_STAGING = r"(?<![^/])\.[^/]+\.[a-z0-9_]{8}\.tmp/"  # a staging folder: NAME's new version


def write_error(path: Path, err: OSError) -> PipelineError:
    """One line for a failed write of ``path`` (named as the user knows it, not its staging
    folder) with the OS's reason, or the file standing where a folder must be."""
    where = re.sub(_STAGING, "", str(path))
    blocker = next((p for p in reversed(path.parents) if p.is_file()), None)
    why = f"{blocker} is a file, not a directory" if blocker else err.strerror or err
    return PipelineError(
        f"cannot write {where}: {why}; make room or fix the folder, or choose another path"
    )


class Outputs:
    """A stage's outputs, each staged in ``.NAME.xxxxxxxx.tmp/`` beside it."""

    def __init__(self) -> None:
        self.staged: list[tuple[Path, Path]] = []  # (path, its new version)

    def file(self, path: Path) -> Path:
        path = Path(path)
        if path.is_dir() and not path.is_symlink():
            raise PipelineError(
                f"cannot write {path}: a directory is in the way; remove it or choose another path"
            )
        return self._stage(path)

    def folder(self, path: Path) -> Path:
        """A folder to fill that replaces ``path`` (never the current directory or above)."""
        if Path.cwd().resolve().is_relative_to(Path(path).resolve()):
            raise PipelineError(
                f"cannot replace {path}: it is the current directory or holds it; choose an "
                "output folder of its own (e.g. the one in dvc.yaml)"
            )
        new = self._stage(Path(path))
        new.mkdir()
        return new

    def _stage(self, path: Path) -> Path:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            for old in path.parent.glob(f".{glob.escape(path.name)}.{'[a-z0-9_]' * 8}.tmp"):
                if old.is_dir() and not old.is_symlink():  # a killed run's
                    shutil.rmtree(old)
                else:
                    old.unlink()
            staging = tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        except OSError as err:
            raise write_error(path, err) from err
        self.staged.append((path, Path(staging) / path.name))
        return self.staged[-1][1]

    def commit(self) -> None:
        """Move every old version aside, then every new one in; undo all on any failure."""
        umask = os.umask(0o022)  # read by setting it, restored at once
        os.umask(umask)
        done: list[tuple[Path, Path]] = []
        try:
            for path, new in self.staged:
                if new.is_file():  # the mode open() gives: some writers make files private
                    os.chmod(new, 0o666 & ~umask)
                if os.path.lexists(path):
                    os.replace(path, new.parent / "previous")
                done.append((path, new))
                os.replace(new, path)
        except OSError as err:
            for path, new in reversed(done):
                if not new.exists() and os.path.lexists(path):
                    os.replace(path, new.parent / "failed")
                if os.path.lexists(new.parent / "previous"):
                    os.replace(new.parent / "previous", path)
            raise write_error(done[-1][0] if done else self.staged[0][0], err) from err

    def discard(self) -> None:
        for _, new in self.staged:
            shutil.rmtree(new.parent, ignore_errors=True)


@contextlib.contextmanager
def outputs() -> Iterator[Outputs]:
    """Outputs renamed into place together, SIGTERM and SIGINT held, when the block succeeds;
    a failure or a signal in the block changes none."""
    out = Outputs()
    try:
        yield out
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
        try:
            out.commit()
        finally:
            out.discard()  # the old versions go before a held signal is delivered
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    except OSError as err:
        if err.errno not in _FULL or not out.staged:
            raise
        raise write_error(out.staged[-1][0], err) from err
    finally:
        out.discard()


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    with outputs() as out:
        yield out.file(path)


@contextlib.contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    with outputs() as out:
        yield out.folder(path)


def write_text(text: str, path: Path) -> None:
    write_bytes(text.encode("utf-8"), path)


def write_bytes(content: bytes, path: Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(content)


def write_csv(frame: pd.DataFrame, path: Path, index: bool = False) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=index, lineterminator="\n")


def save_figure(fig: Figure, path: Path) -> None:
    """PNG without matplotlib's version stamp, so the bytes depend only on the data."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, metadata={"Software": None})


def write_json(obj: Any, path: Path, sort_keys: bool = True) -> None:
    """Stable JSON (sorted keys unless the order is the caller's, 2-space indent) so diffs stay
    small; NaN is refused (not JSON)."""
    try:
        text = json.dumps(obj, indent=2, sort_keys=sort_keys, allow_nan=False)
    except ValueError as err:
        where = re.sub(_STAGING, "", str(path))
        raise PipelineError(
            f"cannot write {where}: a number is NaN or infinite, which JSON cannot hold; the "
            "numbers behind it overflowed: check the inputs of the stage that writes it"
        ) from err
    write_text(text + "\n", path)


def file_digest(path: Path, algorithm: str) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, algorithm).hexdigest()


def read_text(path: Path, kind: str) -> str:
    """A file's UTF-8 text, read no further than one byte past ``MAX_TEXT_BYTES[kind]``."""
    limit = MAX_TEXT_BYTES[kind]
    try:
        with open(path, "rb") as handle:
            data = handle.read(limit + 1)
        if len(data) > limit:
            raise PipelineError(
                f"{path}: larger than the {limit / 2**20:g} MiB a {kind} file may hold here "
                "(the limit that keeps every read within memory); point to the right file"
            )
        return data.decode("utf-8")
    except FileNotFoundError as err:
        fix = "check the path" if kind == "YAML" else "run the stage that writes it"
        raise PipelineError(f"{path}: file not found; {fix}") from err
    except UnicodeDecodeError as err:
        raise PipelineError(
            f"{path}: not UTF-8 text (byte 0x{err.object[err.start]:02x} at offset "
            f"{err.start}); save it as UTF-8"
        ) from err
    except OSError as err:  # a directory, no permission, ...
        raise PipelineError(
            f"{path}: cannot read it ({err.strerror or err}); point to a readable file"
        ) from err


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON ``object_pairs_hook`` that refuses a key given twice (json keeps the last)."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise KeyError(key)
        out[key] = value
    return out


def read_json(path: Path) -> Any:
    """JSON with each key once; bad syntax or a deep nesting is one line."""
    try:
        return json.loads(read_text(path, "JSON"), object_pairs_hook=_unique_pairs)
    except json.JSONDecodeError as err:
        raise PipelineError(
            f"{path}: not valid JSON ({err.msg} at line {err.lineno}){RERUN}"
        ) from err
    except RecursionError as err:
        raise PipelineError(f"{path}: not valid JSON (nested too deeply){RERUN}") from err
    except KeyError as err:  # from _unique_pairs
        raise PipelineError(f"{path}: duplicate key {err}; keep only one") from err


def read_csv(path: Path, dtype: Any = None) -> pd.DataFrame:
    """A CSV file read with no NA guessing (an empty field stays "")."""
    import pandas as pd

    try:
        return pd.read_csv(StringIO(read_text(path, "CSV")), dtype=dtype, keep_default_na=False)
    except ValueError as err:  # pandas' ParserError and EmptyDataError included
        raise PipelineError(f"{path}: not a readable CSV file ({err}){RERUN}") from err


def validated(kind: Any, data: Any, where: Path | str) -> Any:
    """``data`` checked against ``kind`` (a model, or e.g. ``list[Row]``), or one line."""
    try:
        return TypeAdapter(kind).validate_python(data)
    except ValidationError as err:
        raise PipelineError(f"{where}: {one_line(err)}{RERUN}") from err


def read_rows(path: Path, row: type, frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` (read from ``path``) once each row validates as ``row`` (at least one)."""
    validated(list[row], frame.to_dict(orient="records"), path)  # type: ignore[valid-type]
    if frame.empty:
        raise PipelineError(f"{path}: no rows{RERUN}")
    return frame
