"""io: IDX parsing and its failure modes, atomic writes, safetensors, pickle refusal."""

import gzip
import os
import pickle
import stat
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from mnist_pipeline.core.errors import PipelineError
from mnist_pipeline.core.io import atomic_dir, atomic_path, read_json, write_json
from mnist_pipeline.core.params import read_yaml
from mnist_pipeline.data.idx import read_idx, write_idx
from mnist_pipeline.data.tensors import load_tensors, save_tensors


def test_idx_round_trip_raw_and_gzip(tmp_path: Path) -> None:
    images = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    write_idx(images, tmp_path / "x")
    assert (tmp_path / "x").read_bytes()[:4] == b"\x00\x00\x08\x03"
    np.testing.assert_array_equal(read_idx(tmp_path / "x"), images)
    with gzip.open(tmp_path / "x.gz", "wb") as handle:
        handle.write((tmp_path / "x").read_bytes())
    np.testing.assert_array_equal(read_idx(tmp_path / "x.gz"), images)


def test_idx_labels_have_magic_801(tmp_path: Path) -> None:
    write_idx(np.array([3, 1, 4], dtype=np.uint8), tmp_path / "y")
    assert (tmp_path / "y").read_bytes()[:8] == b"\x00\x00\x08\x01" + struct.pack(">I", 3)
    assert read_idx(tmp_path / "y").tolist() == [3, 1, 4]


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"\x12\x34\x08\x03" + struct.pack(">3I", 1, 2, 2) + b"\x00" * 4, "bad IDX magic"),
        (b"\x00\x00\x07\x03" + struct.pack(">3I", 1, 2, 2) + b"\x00" * 4, "bad IDX magic"),
        (b"\x00\x00\x08\x03" + struct.pack(">3I", 2, 2, 2) + b"\x00" * 5, "truncated"),
        (b"\x00\x00\x08\x01" + struct.pack(">I", 2) + b"\x00" * 3, "trailing bytes"),
        (b"\x00\x00", "too short"),
        (b"\x00\x00\x08\x03\x00\x00", "truncated IDX header"),
    ],
)
def test_bad_idx_files_fail_with_one_clear_line(
    tmp_path: Path, payload: bytes, message: str
) -> None:
    path = tmp_path / "bad"
    path.write_bytes(payload)
    with pytest.raises(PipelineError, match=message) as info:
        read_idx(path)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_corrupt_gzip_is_reported(tmp_path: Path) -> None:
    good = gzip.compress(b"\x00\x00\x08\x01" + struct.pack(">I", 100) + bytes(100))
    path = tmp_path / "labels.gz"
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(PipelineError, match="corrupt or truncated gzip"):
        read_idx(path)


def test_missing_idx_file(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match="file not found"):
        read_idx(tmp_path / "nope")


def test_atomic_path_leaves_nothing_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_atomic_dir_swaps_whole_directory(tmp_path: Path) -> None:
    target = tmp_path / "d"
    target.mkdir()
    (target / "stale").write_text("x")
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "new").write_text("y")
        raise RuntimeError
    assert [p.name for p in target.iterdir()] == ["stale"]
    with atomic_dir(target) as tmp:  # the earlier version goes
        (tmp / "new").write_text("y")
    assert [p.name for p in target.iterdir()] == ["new"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


@pytest.mark.usefixtures("umask_022")
def test_outputs_are_0644_and_folders_0755(tmp_path: Path) -> None:
    """Readable by a teammate or a web server, although the temp files start private."""
    write_json({"a": 1}, tmp_path / "m.json")
    save_tensors({"x": torch.zeros(2)}, tmp_path / "t.safetensors")
    with atomic_dir(tmp_path / "reports") as tmp:
        write_json({}, tmp / "figures" / "f.json")
    modes = {
        path.relative_to(tmp_path).as_posix(): stat.S_IMODE(path.stat().st_mode)
        for path in tmp_path.rglob("*")
    }
    assert modes == {
        "m.json": 0o644,
        "t.safetensors": 0o644,
        "reports": 0o755,
        "reports/figures": 0o755,
        "reports/figures/f.json": 0o644,
    }
    os.umask(0o077)  # a private umask is respected, not overridden
    write_json({}, tmp_path / "private.json")
    assert stat.S_IMODE((tmp_path / "private.json").stat().st_mode) == 0o600


def test_unwritable_destination_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a dir")
    with pytest.raises(PipelineError, match="cannot write"):
        write_json({}, blocker / "sub" / "x.json")


def test_json_is_stable(tmp_path: Path) -> None:
    write_json({"b": 1, "a": [1.5]}, tmp_path / "m.json")
    assert (tmp_path / "m.json").read_text() == '{\n  "a": [\n    1.5\n  ],\n  "b": 1\n}\n'
    assert read_json(tmp_path / "m.json") == {"a": [1.5], "b": 1}


def test_bad_json_and_yaml_name_the_file(tmp_path: Path) -> None:
    (tmp_path / "m.json").write_text("{oops")
    with pytest.raises(PipelineError, match=r"m\.json: not valid JSON"):
        read_json(tmp_path / "m.json")
    (tmp_path / "d.json").write_text('{"a": 1, "a": 1}')
    with pytest.raises(PipelineError, match=r"d\.json: duplicate key 'a'; keep only one"):
        read_json(tmp_path / "d.json")
    (tmp_path / "p.yaml").write_text("train: [1,\n")
    with pytest.raises(PipelineError, match=r"p\.yaml: not valid YAML at line"):
        read_yaml(tmp_path / "p.yaml")


def test_safetensors_round_trip_is_byte_deterministic(tmp_path: Path) -> None:
    tensors = {"w": torch.arange(6.0).reshape(2, 3), "b": torch.zeros(3, dtype=torch.int64)}
    save_tensors(tensors, tmp_path / "a.safetensors", {"k": "v"})
    save_tensors(tensors, tmp_path / "b.safetensors", {"k": "v"})
    assert (tmp_path / "a.safetensors").read_bytes() == (tmp_path / "b.safetensors").read_bytes()
    loaded, meta = load_tensors(tmp_path / "a.safetensors")
    assert meta == {"k": "v"}
    assert all(np.array_equal(loaded[k], tensors[k].numpy()) for k in tensors)


def test_safetensors_bytes_do_not_depend_on_the_framework(tmp_path: Path) -> None:
    """Written from numpy (no torch import) or through safetensors.torch: the same file."""
    from safetensors.torch import save_file

    tensors = {"w": torch.rand(3, 4), "y": torch.arange(5)}
    save_tensors(tensors, tmp_path / "ours.safetensors", {"k": "v"})
    save_file(tensors, str(tmp_path / "torch.safetensors"), {"mnist_pipeline": '{"k": "v"}'})
    ours, theirs = (tmp_path / f"{n}.safetensors" for n in ("ours", "torch"))
    assert ours.read_bytes() == theirs.read_bytes()


# Subprocess: each process hashes strings with its own seed; three processes compare.
def test_safetensors_bytes_are_stable_across_processes(tmp_path: Path) -> None:
    """Metadata order must not depend on the process (safetensors hashes it)."""
    import subprocess
    import sys

    code = (  # numpy, not torch: the same bytes (see above) without torch's import
        "import sys, numpy; from mnist_pipeline.data.tensors import save_tensors; "
        "save_tensors({'a': numpy.ones(2, numpy.float32)}, sys.argv[1], "
        "{k: k * 3 for k in ('dataset', 'source', 'classes', 'spec', 'loss')})"
    )
    for name in ("a", "b", "c"):
        subprocess.run([sys.executable, "-c", code, str(tmp_path / name)], check=True)
    blobs = {(tmp_path / name).read_bytes() for name in ("a", "b", "c")}
    assert len(blobs) == 1


class _Planted:
    """Unpickling this would create a marker file: proof that the pickle ran code."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (Path.write_text, (Path(self.marker), "pwned"))  # type: ignore[return-value]


@pytest.mark.parametrize("writer", ["pickle", "torch.save"])
def test_planted_pickle_is_refused_never_executed(tmp_path: Path, writer: str) -> None:
    marker = tmp_path / "marker"
    path = tmp_path / "model.safetensors"
    if writer == "pickle":
        path.write_bytes(pickle.dumps(_Planted(str(marker))))
    else:
        torch.save({"w": torch.zeros(2)}, path)
    with pytest.raises(PipelineError, match="not a readable safetensors file"):
        load_tensors(path)
    assert not marker.exists()


def test_garbage_instead_of_safetensors(tmp_path: Path) -> None:
    path = tmp_path / "x.safetensors"
    path.write_bytes(b"hello world, not tensors")
    with pytest.raises(PipelineError, match="not a readable safetensors file"):
        load_tensors(path)
