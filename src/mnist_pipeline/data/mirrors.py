"""A mirror's files, from a local directory or a URL prefix, read as streams, hashed as they
arrive."""

from __future__ import annotations

import hashlib
import logging
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mnist_pipeline.core.errors import PipelineError
from mnist_pipeline.data import idx

log = logging.getLogger(__name__)
READ_TIMEOUT_S = 30.0  # per network read; data.download_timeout bounds the whole download


class _Read:
    """A source file read through, hashed (the known md5s are of the ``.gz``)."""

    def __init__(self, stream: Any) -> None:
        self.stream, self.md5 = stream, hashlib.md5()

    def peek(self, size: int) -> bytes:
        return self.stream.peek(size)

    def read(self, size: int) -> bytes:
        chunk = self.stream.read(size)
        self.md5.update(chunk)
        return chunk


def _open(where: str, remote: bool) -> Any:
    """``where`` (a path, or a URL if ``remote``) open for reading; None if it does not exist."""
    try:
        if not remote:
            return open(where, "rb") if Path(where).is_file() else None
        return urllib.request.urlopen(where, timeout=READ_TIMEOUT_S)
    except urllib.error.HTTPError as err:
        if err.code == 404:
            return None
        raise PipelineError(
            f"data.mirror: {where} answered HTTP {err.code}; check the URL prefix in data.mirror"
        ) from err
    except OSError as err:  # URLError included
        reason = getattr(err, "reason", err)
        if isinstance(reason, FileNotFoundError):  # a file:// URL: try the raw name next
            return None
        raise PipelineError(
            f"data.mirror: cannot reach {where} ({reason}); check the URL and the network, "
            "or set data.mirror to a local directory"
        ) from err


def _root(mirror: str) -> tuple[str, bool]:
    """``data.mirror`` as a URL prefix or a folder path (checked), and whether it is a URL."""
    try:
        remote = urllib.parse.urlparse(mirror).scheme in ("http", "https", "file")
    except ValueError as err:  # e.g. "http://[::1": Invalid IPv6 URL
        raise PipelineError(
            f"data.mirror={mirror!r}: not a valid URL ({err}); fix it or use a local directory"
        ) from err
    if not remote and not Path(mirror).expanduser().is_dir():
        raise PipelineError(
            f"data.mirror={mirror}: no such directory; point it at a folder holding "
            "the four IDX files (e.g. /usr/share/datasets/fashion-mnist)"
        )
    return (mirror.rstrip("/") if remote else str(Path(mirror).expanduser())), remote


def fetch(mirror: str, names: tuple[str, ...]) -> Iterator[tuple[str, str, bytes, Any, str]]:
    """``(name, where, IDX content, shape, md5 of the bytes read)`` of each file ``names`` of
    a mirror folder or URL prefix, as ``NAME.gz`` or else ``NAME``; the files together hold at
    most ``idx.MAX_IDX_BYTES``; one log line per file."""
    root, remote = _root(mirror)
    budget = idx.MAX_IDX_BYTES
    for name in names:
        for where in (f"{root}/{name}.gz", f"{root}/{name}"):
            if (stream := _open(where, remote)) is not None:
                break
        else:
            raise PipelineError(
                f"data.mirror={mirror}: missing {name}.gz (or {name}); "
                f"the mirror must hold all four files: {', '.join(names)}"
            )
        with stream:
            source = _Read(stream)
            try:
                content, header, _, shape = idx.read_idx_bytes(source, where, budget)
            except OSError as err:  # the connection, mid-download
                raise PipelineError(
                    f"data.mirror: cannot read {where} ({err}); check the URL and the network, "
                    "or set data.mirror to a local directory"
                ) from err
        budget -= len(content) - header
        log.info("fetched %s (%s bytes)", where, f"{len(content):,}")
        yield name, where, content, shape, source.md5.hexdigest()
