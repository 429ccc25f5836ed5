"""Bigger data through a mirror, no code changes: a synthetic 200k-image IDX set.

`data.dataset: idx` takes any IDX set of 28×28 images with integer labels (EMNIST-style)
from `data.mirror`, with the number of classes read off the labels. Download, preprocess
and one training epoch must each stay within the 1.5 GB peak-memory budget.
"""

import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import REPO, run
from mnist_pipeline.core.io import read_json
from mnist_pipeline.data.idx import write_idx
from mnist_pipeline.data.sources import IDX_FILES

pytestmark = pytest.mark.slow

N_TRAIN, N_TEST, CLASSES = 200_000, 10_000, 26
BUDGET_MIB = 1536

# Runs a command and prints its peak RSS (KiB on Linux): each stage in its own wrapper,
# so the number is that stage's alone.
PEAK = (
    "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r.returncode)"
)


def big_idx_set(directory: Path) -> Path:
    """26 classes (EMNIST letters-like): a class-dependent bright band plus noise."""
    rng = np.random.default_rng(0)
    for split, n in (("train", N_TRAIN), ("test", N_TEST)):
        labels = rng.integers(0, CLASSES, size=n).astype(np.uint8)
        images = rng.integers(0, 40, size=(n, 28, 28), dtype=np.uint8)
        rows = labels.astype(np.int64)  # band row = label, so classes are separable
        images[np.arange(n), rows, 2:26] = 250
        image_name, label_name = IDX_FILES[split]
        write_idx(images, directory / image_name)
        write_idx(labels, directory / label_name)
    return directory


def stage(name: str, *args: str, cwd: Path) -> int:
    """Run a stage script; return its peak RSS in MiB."""
    cmd = [sys.executable, "-c", PEAK, sys.executable, str(REPO / "stages" / f"{name}.py"), *args]
    result = run(cmd, cwd, src=REPO / "src", timeout=600)
    return int(result.stdout.strip().splitlines()[-1]) // 1024


# Subprocess: each stage's peak memory alone, from a fresh process, is what is measured.
def test_200k_images_26_classes_within_memory(tmp_path: Path) -> None:
    mirror = big_idx_set(tmp_path / "mirror")
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["data"].update(dataset="idx", source="mirror", mirror=str(mirror))
    raw["train"].update(epochs=1, batch_size=64, lr=0.1)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(raw))
    p = str(params)
    peaks = {
        "download": stage("download", "--params", p, "--out", "raw", cwd=tmp_path),
        "preprocess": stage(
            "preprocess", "--params", p, "--raw", "raw", "--out", "processed", cwd=tmp_path
        ),
        "train": stage(
            "train",
            "--params",
            p,
            "--data",
            "processed",
            "--model",
            "model.safetensors",
            "--history",
            "log.csv",
            cwd=tmp_path,
        ),
    }
    print(f"peak RSS MiB: {peaks}")
    assert max(peaks.values()) <= BUDGET_MIB, peaks
    manifest = read_json(tmp_path / "raw" / "manifest.json")
    assert manifest["classes"] == [str(k) for k in range(CLASSES)]
    assert manifest["counts"] == {"train": N_TRAIN, "test": N_TEST}
    log = (tmp_path / "log.csv").read_text().splitlines()
    assert len(log) == 2 and float(log[1].split(",")[2]) > 0.5
