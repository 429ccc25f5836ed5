"""Atomic writes and the plain text formats every stage shares (YAML, JSON, CSV, PNG figures).

Every writer goes through ``atomic_path``: the data lands in a temp file beside the
destination and is renamed into place only when complete, so a failed stage never leaves a
half-written file. ``outputs`` stages several outputs and renames them together, or none.
``check_replaceable`` lets a folder output replace only what the pipeline wrote. Temp files
are private while written; what lands gets the modes a plain ``open``/``mkdir`` would give.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import json
import math
import os
import re
import shutil
import signal
import tempfile
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import TypeAdapter, ValidationError

from mnist_pipeline.core.errors import PipelineError, one_line, shown

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
_WRITE_LIMITS = (*_NO_SPACE, errno.EFBIG)  # disk full, quota, file-size limit (ulimit -f)
# A temp sibling of an output, as ``tempfile`` names it: ``.NAME.<8 chars>.tmp``.
_TEMP_NAME = re.compile(r"^\.(.+)\.[a-z0-9_]{8}\.tmp$")
# What a folder output is never allowed to replace: a repository or DVC project root.
_PROJECT_MARKERS = (".git", ".dvc")


def _shown(path: Path) -> Path:
    """``path`` as the user knows it: every temp name (``.NAME.xxxxxxxx.tmp``) read as
    NAME, a staging folder's (``.NAME.xxxxxxxx.tmp/NAME``) dropped."""
    parts, shown = path.parts, []
    for index, part in enumerate(parts):
        temp = _TEMP_NAME.match(part)
        if temp and parts[index + 1 : index + 2] == (temp[1],):
            continue
        shown.append(temp[1] if temp else part)
    return Path(*shown)


def write_error(path: Path, err: OSError, folder: bool = False, written: int = 0) -> PipelineError:
    """One line for a failed write: what is in the way, and how to clear it. Disk full or
    over the file-size limit: the output (not our temp sibling), its folder, the limit or
    the space free, and the ``written`` bytes."""
    if err.errno in _WRITE_LIMITS:
        shown = _shown(path)
        if err.errno == errno.EFBIG:
            import resource

            limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
            return PipelineError(
                f"cannot write {shown}: over the file-size limit (ulimit -f: "
                f"{limit / 2**20:.1f} MiB; the file needs more than the "
                f"{written / 2**20:.1f} MiB written); raise it (ulimit -f unlimited) and rerun "
                "the stage"
            )
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
    return PipelineError(f"cannot write {_shown(path)}: {why}")


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


def _mode(folder: bool) -> int:
    """What a plain ``open``/``mkdir`` would give under the current umask."""
    umask = os.umask(0o022)  # read it by setting it, then restore it at once
    os.umask(umask)
    return (0o777 if folder else 0o666) & ~umask


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temp file next to ``path``, renamed onto ``path`` only when the block succeeds."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _clear_stale(path)
        tmp = Path(_temp_file(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    except OSError as err:
        raise write_error(path, err) from err
    try:
        try:
            yield tmp
        except OSError as err:
            if err.errno not in _WRITE_LIMITS:
                raise
            written = tmp.stat().st_size if tmp.is_file() else 0
            raise write_error(path, err, written=written) from err
        try:
            os.chmod(tmp, _mode(folder=False))
            os.replace(tmp, path)
        except OSError as err:
            raise write_error(path, err) from err
    finally:
        _remove(tmp)


def _owned(relative: str, owns: tuple[str, ...]) -> bool:
    """Whether a path inside an output folder matches one of the writer's patterns
    (``fnmatch``; ``*`` stays within one folder level)."""
    depth = relative.count("/")
    return any(depth == pattern.count("/") and fnmatch(relative, pattern) for pattern in owns)


def check_replaceable(path: Path, owns: tuple[str, ...]) -> None:
    """Refuse, in one line, to replace a folder this pipeline did not write.

    ``path`` may be replaced when it does not exist, is empty, or holds nothing but files
    the writer's patterns ``owns`` (an earlier run's output). Never the current directory
    or a folder above it, never a folder holding ``.git`` or ``.dvc``.
    """
    path = Path(path)
    if path.is_symlink() or not path.exists():
        return  # nothing to lose: a link is replaced, never what it points to
    if not path.is_dir():
        raise PipelineError(
            f"cannot write {path}: a file is in the way; remove it or choose another path"
        )
    if Path.cwd().resolve().is_relative_to(path.resolve()):
        raise PipelineError(
            f"cannot replace {path}: it is the current directory or holds it, which a stage "
            "never replaces; choose an output folder of its own (e.g. the one in dvc.yaml)"
        )
    for root, dirs, files in os.walk(path):
        where = Path(root)
        for name in sorted(dirs + files):
            relative = (where / name).relative_to(path).as_posix()
            if name in _PROJECT_MARKERS:
                raise PipelineError(
                    f"cannot replace {path}: it holds {relative}, a project's own folder; "
                    "choose an output folder of its own"
                )
            is_file = name in files or (where / name).is_symlink()
            if is_file and not _owned(relative, owns):
                raise PipelineError(
                    f"cannot replace {path}: it holds {relative}, which this stage did "
                    "not write; move it away or choose another output folder"
                )


@dataclass
class _Staged:
    path: Path  # the output
    staging: Path  # ``.NAME.xxxxxxxx.tmp/`` beside it: the new version, then the old one
    folder: bool
    owns: tuple[str, ...]

    @property
    def new(self) -> Path:
        return self.staging / self.path.name

    @property
    def old(self) -> Path:
        return self.staging / "previous"


class Outputs:
    """A stage's outputs, written to temps and renamed into place together (``outputs``)."""

    def __init__(self) -> None:
        self._staged: list[_Staged] = []

    def _stage(self, path: Path, folder: bool, owns: tuple[str, ...]) -> Path:
        path = Path(path)
        if folder:
            check_replaceable(path, owns)  # before any work: refuse early
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            _clear_stale(path)
            staging = Path(
                tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            )
        except OSError as err:
            raise write_error(path, err, folder) from err
        staged = _Staged(path, staging, folder, owns)
        self._staged.append(staged)
        if folder:
            staged.new.mkdir()
        return staged.new

    def file(self, path: Path) -> Path:
        """Where to write the file that becomes ``path`` on commit."""
        return self._stage(path, folder=False, owns=())

    def folder(self, path: Path, owns: tuple[str, ...] = ()) -> Path:
        """A folder to fill that replaces ``path`` on commit. An existing ``path`` must hold
        only files matching ``owns`` (an earlier run's output) or the new folder's names."""
        return self._stage(path, folder=True, owns=owns)

    def _commit(self) -> None:
        """Move every old version aside, then every new one in; undo all on any failure."""
        for item in self._staged:
            if item.folder:
                names = tuple(p.relative_to(item.new).as_posix() for p in item.new.rglob("*"))
                check_replaceable(item.path, item.owns + names)
            elif item.path.is_dir() and not item.path.is_symlink():
                raise write_error(item.path, OSError(errno.EISDIR, "is a directory"))
        done: list[_Staged] = []
        try:
            for item in self._staged:
                for path in [item.new, *(item.new.rglob("*") if item.folder else [])]:
                    os.chmod(path, _mode(path.is_dir()))
                if item.path.is_symlink() or item.path.exists():
                    os.replace(item.path, item.old)
                done.append(item)
                os.replace(item.new, item.path)
        except OSError as err:
            for item in reversed(done):
                placed = not item.new.exists() and (item.path.is_symlink() or item.path.exists())
                if placed:
                    os.replace(item.path, item.staging / "failed")
                if item.old.is_symlink() or item.old.exists():
                    os.replace(item.old, item.path)
            raise write_error(done[-1].path if done else self._staged[0].path, err) from err

    def _discard(self) -> None:
        for item in self._staged:
            _remove(item.staging)


@contextlib.contextmanager
def outputs() -> Iterator[Outputs]:
    """``with outputs() as out: write_json(m, out.file(a)); write_csv(f, out.file(b))``.

    Every output is written into a temp folder beside it; only when the whole block has
    succeeded are they renamed into place, together, with SIGTERM and SIGINT held back
    until the last rename (a rename that fails puts every old version back). A failure
    or a signal in the block changes no output; the temps are removed on every path.
    """
    out = Outputs()
    try:
        yield out
        held = threading.current_thread() is threading.main_thread()
        if held:
            mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
        try:
            out._commit()
        finally:
            if held:
                out._discard()  # the old versions go before a held signal is delivered
                signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    finally:
        out._discard()


@contextlib.contextmanager
def atomic_dir(path: Path, owns: tuple[str, ...] = ()) -> Iterator[Path]:
    """A temp folder swapped in for ``path`` only when the block succeeds; an existing
    ``path`` is replaced only if it holds nothing but ``owns``' files (``Outputs.folder``)."""
    with outputs() as out:
        yield out.folder(path, owns)


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
            f"cannot write {_shown(Path(path))}: {bad}, which JSON cannot hold; the numbers "
            "behind it overflowed: check the inputs of the stage that writes it (e.g. rerun "
            "train)"
        )
    write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n", path)


RERUN = "; rerun the stage that writes it"


# The most bytes each kind of text file may hold, far above any real file (predictions.csv
# of a 70,000-image test set included). Reads stop at the limit + 1 byte, so a huge or endless
# file (``/dev/zero``) costs that much memory and time, no more.
MAX_TEXT_BYTES = {"YAML": 4 * 2**20, "JSON": 16 * 2**20, "CSV": 128 * 2**20}
# YAML nesting deeper than this is refused before it is built: real files nest 2 (params)
# to 6 (dvc.yaml) levels, and libyaml's C composer recurses once per level (a crash, not an
# exception, at a few ten thousand).
MAX_YAML_DEPTH = 64


def read_bytes_bounded(handle: Any, source: object, kind: str, limit: int | None = None) -> bytes:
    """At most ``limit`` bytes from a binary ``handle`` (``MAX_TEXT_BYTES[kind]``), or one
    line naming ``source`` when there are more."""
    limit = MAX_TEXT_BYTES[kind] if limit is None else limit
    data = handle.read(limit + 1)
    if len(data) > limit:
        raise PipelineError(
            f"{source}: larger than the {limit / 2**20:g} MiB a {kind} file may hold here "
            "(the limit that keeps every read within memory); point to the right file"
        )
    return bytes(data)


def decode_text(data: bytes, source: object) -> str:
    """UTF-8 text, or one line naming the first bad byte."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise PipelineError(
            f"{source}: not UTF-8 text (byte 0x{err.object[err.start]:02x} at offset "
            f"{err.start}); save it as UTF-8"
        ) from err


def _read_text(path: Path, kind: str, missing: str = "run the stage that writes it") -> str:
    try:
        with open(path, "rb") as handle:
            data = read_bytes_bounded(handle, path, kind)
    except FileNotFoundError as err:
        raise PipelineError(f"{path}: file not found; {missing}") from err
    except OSError as err:  # a directory, no permission, ...
        raise PipelineError(
            f"{path}: cannot read it ({err.strerror or err}); point to a readable file"
        ) from err
    return decode_text(data, path)


def read_json(path: Path) -> Any:
    return parse_json(_read_text(path, "JSON"), path)


def parse_json(text: str, source: object, fix: str = RERUN) -> Any:
    """JSON from a string, each key once; a deep nesting or bad syntax is one line."""
    try:
        return json.loads(text, object_pairs_hook=_unique_pairs)
    except json.JSONDecodeError as err:
        raise PipelineError(
            f"{source}: not valid JSON ({err.msg} at line {err.lineno}){fix}"
        ) from err
    except RecursionError as err:
        raise PipelineError(f"{source}: not valid JSON (nested too deeply){fix}") from err
    except KeyError as err:  # from _unique_pairs
        raise PipelineError(f"{source}: duplicate key {err}; keep only one") from err


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON ``object_pairs_hook`` that refuses a key given twice (json keeps the last)."""
    out = dict(pairs)
    if len(out) < len(pairs):  # name the key given twice
        raise KeyError(next(key for key, n in Counter(k for k, _ in pairs).items() if n > 1))
    return out


def yaml_depth_problem(text: str) -> str | None:
    """``None``, or why ``text`` nests deeper than ``MAX_YAML_DEPTH`` (and where): checked on
    libyaml's event stream, which holds no recursion, before anything is built."""
    from ruamel.yaml import YAML
    from ruamel.yaml.events import CollectionEndEvent, CollectionStartEvent

    depth = 0
    for event in YAML(typ="safe").parse(text):
        if isinstance(event, CollectionStartEvent):
            depth += 1
            if depth > MAX_YAML_DEPTH:
                line = event.start_mark.line + 1 if event.start_mark else "?"
                return f"nested deeper than {MAX_YAML_DEPTH} levels at line {line}"
        elif isinstance(event, CollectionEndEvent):
            depth -= 1
    return None


def parse_yaml(text: str, source: object) -> Any:
    """YAML 1.2 read exactly as DVC reads ``params.yaml`` and ``dvc.yaml`` (ruamel.yaml's
    safe loader: ``1e-3`` is 0.001, ``yes`` a string, merge keys allowed, a key given twice
    refused), so a stage and ``dvc params diff`` never see different values. An empty
    file is ``None``. Errors are one line with the line number."""
    from ruamel.yaml import YAML, YAMLError
    from ruamel.yaml.constructor import DuplicateKeyError

    try:
        deep = yaml_depth_problem(text)
        if deep:
            raise PipelineError(f"{source}: {deep}; flatten it")
        return YAML(typ="safe").load(text)
    except DuplicateKeyError as err:
        key = re.search(r'duplicate key "(.*)" with value', err.problem or "", re.S)
        name = shown(key.group(1) if key else "?")
        raise PipelineError(
            f"{source}: duplicate key {name} at line {err.problem_mark.line + 1}; keep only one"
        ) from err
    except YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise PipelineError(f"{source}: not valid YAML{where}: fix the syntax") from err
    except RecursionError as err:
        raise PipelineError(f"{source}: nested too deeply; flatten it") from err


def read_yaml_text(path: Path, source: object = None) -> str:
    """A YAML file's text, bounded in size and nesting, for a loader that builds it (ours,
    or DVC's round-trip one that keeps line numbers)."""
    from ruamel.yaml import YAMLError

    text = _read_text(path, "YAML", missing="check the path")
    try:
        deep = yaml_depth_problem(text)
    except YAMLError:  # bad syntax: the loader that follows names it, at its line
        deep = None
    if deep:
        raise PipelineError(f"{path if source is None else source}: {deep}; flatten it")
    return text


def read_yaml(path: Path) -> Any:
    return parse_yaml(_read_text(path, "YAML", missing="check the path"), path)


def write_csv(frame: pd.DataFrame, path: Path, index: bool = False) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=index, lineterminator="\n")


def read_csv(path: Path, dtype: Any = None) -> pd.DataFrame:
    return parse_csv(_read_text(path, "CSV"), str(path), dtype=dtype, fix=RERUN)


def parse_csv(
    text: str, where: str, index_col: int | None = None, dtype: Any = None, fix: str = ""
) -> pd.DataFrame:
    """A CSV from a string (e.g. ``git show REV:path``), read as ``read_csv`` reads files."""
    import io

    import pandas as pd

    try:
        return pd.read_csv(
            io.StringIO(text), index_col=index_col, dtype=dtype, keep_default_na=False
        )
    except ValueError as err:  # pandas' ParserError and EmptyDataError included
        raise PipelineError(f"{where}: not a readable CSV file ({err}){fix}") from err


def save_figure(fig: Figure, path: Path, dpi: int = 100) -> None:
    """PNG without the matplotlib version stamp, so the bytes depend only on the data.

    Figures are plain ``Figure`` objects that pyplot never tracks: nothing to close."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, metadata={"Software": None})


def file_digest(path: Path, algorithm: str) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, algorithm).hexdigest()


def write_bytes(content: bytes, path: Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(content)


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
