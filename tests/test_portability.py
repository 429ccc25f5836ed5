"""Same params, same bytes on other CPUs: the train and evaluate stages under every CPU
this machine can pretend to be.

torch picks its kernels from the CPU it runs on: ATen's vectorised code from
``ATEN_CPU_CAPABILITY`` (default / avx2 / avx512, capped at what the CPU has), MKL's code
path from ``MKL_ENABLE_INSTRUCTIONS`` (AVX2 = a CPU without AVX-512, SSE4_2 = an old
one), NNPACK's convolutions only on AVX2 CPUs (an old one runs without them), glibc's
libm variants from the CPU's features (``GLIBC_TUNABLES`` hides AVX, AVX2 and FMA from an
old one), the thread pool from the cores it may use. With ``train.kernels: portable`` (the
default) every combination must write identical files, and with ``avx2`` every
combination of an AVX2 CPU; with ``native`` they differ, which is what proves this test
can see a difference at all.

    .venv/bin/python -m pytest tests/test_portability.py
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import torch
import yaml

from conftest import REPO, make_split, stage
from mnist_pipeline.core.errors import PipelineError
from mnist_pipeline.core.runtime import KERNEL_PINS, configure_torch
from mnist_pipeline.data.splits import save_split

FLAGS = Path("/proc/cpuinfo").read_text().split()
AVX512 = "avx512f" in FLAGS
# (ATen capability, MKL instruction cap, CPU cores): the CPUs this machine can emulate,
# the oldest first (without NNPACK, see NO_NNPACK); ``avx2`` kernels run on the AVX2 ones
# (the others are refused).
CPUS: list[tuple[str, str | None, str]] = [
    ("default", "SSE4_2", "0"),
    ("avx2", "AVX2", "0"),
    ("avx2", "AVX2", "0,1"),
    *([("avx512", None, "0,1")] if AVX512 else []),
]
OLDEST = {"portable": CPUS[0], "avx2": CPUS[1]}
CONFIGS = {
    "seed": {},  # the notebook's linear softmax-MSE, hand-derived gradients, batch 16
    "mlp-2threads": {"model": "mlp", "hidden": [32], "activation": "relu", "threads": 2,
                     "loss": "cross_entropy", "optimizer": "adam", "lr": 0.003},
    "cnn": {"model": "cnn_bn", "channels": [4, 8], "hidden": [16], "gradients": "autograd",
            "activation": "relu", "batch_size": 32, "lr": 0.05},
}  # fmt: skip


# NNPACK runs on x86-64 CPUs with AVX2 and FMA only; the oldest CPU's runs go through this
# wrapper, which turns it off before the stage starts, as such a CPU has it.
NO_NNPACK = """
import runpy, sys, torch
torch.backends.nnpack.set_flags(False)
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


# glibc picks its libm functions (expf, logf, ...) by CPU feature: an old CPU gets the SSE2 ones.
OLD_GLIBC = "glibc.cpu.hwcaps=-AVX,-AVX2,-FMA,-AVX512F"


@pytest.fixture
def pins_restored(monkeypatch: pytest.MonkeyPatch) -> None:
    """configure_torch sets the pinned variables: put this process's values back after."""
    for name in {key for env, _ in KERNEL_PINS.values() for key in env}:
        monkeypatch.setenv(name, os.environ.get(name, ""))


@pytest.mark.usefixtures("pins_restored")
def test_avx2_kernels_are_refused_on_a_cpu_without_avx2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"avx2": False, "fma3": False})
    with pytest.raises(PipelineError, match=r"^train.kernels=avx2 needs a CPU with AVX2 and FMA"):
        configure_torch(1, "avx2")


@pytest.mark.usefixtures("pins_restored")
@pytest.mark.skipif("avx2" not in FLAGS, reason="needs an AVX2 CPU")
def test_kernels_pinned_after_torch_computed_are_refused() -> None:
    """This process computed with portable kernels (conftest): avx2 ones cannot follow."""
    with pytest.raises(PipelineError, match=r"already computed with DEFAULT kernels"):
        configure_torch(1, "avx2")


@pytest.fixture(scope="module")
def processed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("processed")
    save_split(make_split(320, 1), data / "train.safetensors")
    save_split(make_split(80, 2), data / "test.safetensors")
    return data


def run_cpu(
    processed: Path, work: Path, train: dict[str, object], cpu: tuple[str, str | None, str]
) -> dict[str, str]:
    """Train + evaluate in ``work`` as that CPU would; the md5 of every file they write."""
    capability, mkl, cores = cpu
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["train"].update({"epochs": 2, **train})
    work.mkdir(parents=True)
    (work / "params.yaml").write_text(yaml.safe_dump(raw))
    env = [
        "env",
        f"ATEN_CPU_CAPABILITY={capability}",
        *([f"MKL_ENABLE_INSTRUCTIONS={mkl}"] * bool(mkl)),
    ]
    prefix = ["taskset", "-c", cores, *env]
    wrapper = None
    if cpu == CPUS[0]:
        wrapper = work / "no_nnpack.py"
        wrapper.write_text(NO_NNPACK)
        prefix.append(f"GLIBC_TUNABLES={OLD_GLIBC}")
    for name, args in (
        ("train", ["--data", str(processed), "--model", "m.safetensors", "--history", "log.csv",
                   "--onnx", "m.onnx"]),
        ("evaluate", ["--data", str(processed), "--model", "m.safetensors", "--metrics",
                      "eval.json", "--per-class", "pc.csv", "--confusion", "c.csv",
                      "--counts", "n.csv", "--predictions", "p.csv"]),
    ):  # fmt: skip
        result = stage(name, "--params", "params.yaml", *args, cwd=work, prefix=prefix, via=wrapper)
        assert result.returncode == 0, result.stderr
    return {
        str(p.relative_to(work)): hashlib.md5(p.read_bytes()).hexdigest()
        for p in sorted(work.rglob("*"))
        if p.is_file() and p.name not in ("params.yaml", "no_nnpack.py")
    }


@pytest.mark.slow
@pytest.mark.parametrize("kernels", list(OLDEST))
@pytest.mark.parametrize("config", list(CONFIGS))
def test_pinned_kernels_write_the_same_bytes_on_every_cpu(
    processed: Path, tmp_path: Path, config: str, kernels: str
) -> None:
    cpus = CPUS[CPUS.index(OLDEST[kernels]) :]
    train = {**CONFIGS[config], "kernels": kernels}
    hashes = [run_cpu(processed, tmp_path / str(i), train, cpu) for i, cpu in enumerate(cpus)]
    assert len(hashes[0]) == 8  # model, ONNX, log, metrics, per-class, confusion x2, predictions
    for cpu, other in zip(cpus[1:], hashes[1:], strict=True):
        assert other == hashes[0], f"{cpu} wrote other bytes than {cpus[0]}"


@pytest.mark.slow
def test_native_kernels_differ_between_cpus(processed: Path, tmp_path: Path) -> None:
    """The control: without the pinning, the same run on two CPUs writes another model."""
    native = {"kernels": "native"}
    first = run_cpu(processed, tmp_path / "a", native, CPUS[0])
    last = run_cpu(processed, tmp_path / "b", native, CPUS[-1])
    assert first["m.safetensors"] != last["m.safetensors"]
