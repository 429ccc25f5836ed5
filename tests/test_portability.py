"""Same params, same bytes on other CPUs: with ``train.kernels: portable`` (the default) the
train and evaluate stages write identical files as every CPU this machine can pretend to be.

An older CPU is emulated by capping ATen (``ATEN_CPU_CAPABILITY``), MKL
(``MKL_ENABLE_INSTRUCTIONS``), glibc's libm (``GLIBC_TUNABLES``) and NNPACK (AVX2 CPUs
only), the core count by ``taskset``; the other vendor's CPU runs under qemu-user (Debian's
``qemu-user``: an Intel Haswell on an AMD machine, an AMD EPYC on an Intel one), which also
computes the approximate instructions (``rsqrtps``, ``rcpps``) exactly. With ``native`` the
same runs differ, which proves the test can see a difference.

    .venv/bin/python -m pytest tests/test_portability.py
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from conftest import REPO, make_split, stage
from mnist_pipeline.core.errors import PipelineError
from mnist_pipeline.core.runtime import configure_torch
from mnist_pipeline.data.splits import save_split

FLAGS = Path("/proc/cpuinfo").read_text().split()
# (ATen capability, MKL instruction cap, CPU cores, qemu CPU model or None), the oldest first.
Cpu = tuple[str, str | None, str, str | None]
CPUS: list[Cpu] = [
    ("default", "SSE4_2", "0", None),
    ("avx2", "AVX2", "0", None),
    ("avx2", "AVX2", "0,1", None),
    *([("avx512", None, "0,1", None)] if "avx512f" in FLAGS else []),
]
QEMU = shutil.which("qemu-x86_64")
OTHER_VENDOR = ("avx2", None, "0,1", "EPYC-Rome" if "GenuineIntel" in FLAGS else "Haswell")
CONFIGS = {
    "seed": {},  # the notebook's linear softmax-MSE, hand-derived gradients, batch 16
    "mlp-2threads": {"model": "mlp", "hidden": [32], "activation": "relu", "threads": 2,
                     "loss": "cross_entropy", "optimizer": "adam", "lr": 0.003},
    "cnn": {"model": "cnn_bn", "channels": [4, 8], "hidden": [16], "gradients": "autograd",
            "activation": "relu", "batch_size": 32, "lr": 0.05},
}  # fmt: skip
# The oldest CPU has no NNPACK and glibc's SSE2 libm; the stage runs after this patch.
OLD_CPU = """
import runpy, sys, torch
torch.backends.nnpack.set_flags(False)
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_portable_kernels_after_torch_computed_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    with pytest.raises(PipelineError, match=r"already computed with AVX2 kernels"):
        configure_torch(1, "portable")


@pytest.fixture(scope="module")
def processed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("processed")
    save_split(make_split(320, 1), data / "train.safetensors")
    save_split(make_split(80, 2), data / "test.safetensors")
    return data


def run_cpu(processed: Path, work: Path, train: dict[str, object], cpu: Cpu) -> dict[str, str]:
    """Train + evaluate (2 epochs) in ``work`` as ``cpu`` would; the md5 of every file written."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["train"].update({"epochs": 2, **train})
    work.mkdir(parents=True)
    (work / "params.yaml").write_text(yaml.safe_dump(raw))
    capability, mkl, cores, model = cpu
    prefix = ["taskset", "-c", cores, "env", f"ATEN_CPU_CAPABILITY={capability}"]
    prefix += [f"MKL_ENABLE_INSTRUCTIONS={mkl}"] * bool(mkl)
    prefix += [str(QEMU), "-cpu", model] if model else []
    via = None
    if cpu == CPUS[0]:
        prefix.append("GLIBC_TUNABLES=glibc.cpu.hwcaps=-AVX,-AVX2,-FMA,-AVX512F")
        (via := work / "old_cpu.py").write_text(OLD_CPU)
    data = ["--params", "params.yaml", "--data", str(processed), "--model", "m.safetensors"]
    for name, args in {
        "train": ["--history", "log.csv", "--onnx", "m.onnx"],
        "evaluate": ["--metrics", "eval.json", "--per-class", "pc.csv", "--confusion", "c.csv",
                     "--counts", "n.csv", "--predictions", "p.csv"],
    }.items():  # fmt: skip
        result = stage(name, *data, *args, cwd=work, prefix=prefix, via=via)
        assert result.returncode == 0, result.stderr
    return {
        p.name: hashlib.md5(p.read_bytes()).hexdigest()
        for p in sorted(work.iterdir())
        if p.name not in ("params.yaml", "old_cpu.py")
    }


@pytest.mark.slow
@pytest.mark.parametrize("config", list(CONFIGS))
def test_portable_kernels_write_the_same_bytes_on_every_cpu(
    processed: Path, tmp_path: Path, config: str
) -> None:
    hashes = [run_cpu(processed, tmp_path / str(i), CONFIGS[config], c) for i, c in enumerate(CPUS)]
    assert len(hashes[0]) == 8  # model, ONNX, log, metrics, per-class, confusion x2, predictions
    for cpu, other in zip(CPUS[1:], hashes[1:], strict=True):
        assert other == hashes[0], f"{cpu} wrote other bytes than {CPUS[0]}"


@pytest.mark.slow
@pytest.mark.skipif(QEMU is None, reason="needs qemu-x86_64 (Debian's qemu-user, .ci/debian.sh)")
@pytest.mark.parametrize("config", list(CONFIGS))
def test_portable_kernels_write_the_same_bytes_on_another_vendors_cpu(
    processed: Path, tmp_path: Path, config: str
) -> None:
    here = run_cpu(processed, tmp_path / "here", CONFIGS[config], CPUS[-1])
    other = run_cpu(processed, tmp_path / "other", CONFIGS[config], OTHER_VENDOR)
    assert other == here, f"{OTHER_VENDOR[-1]} (qemu) wrote other bytes than this CPU"


@pytest.mark.slow
def test_native_kernels_differ_between_cpus(processed: Path, tmp_path: Path) -> None:
    """The control: without the pins, the same run on two CPUs writes another model."""
    first = run_cpu(processed, tmp_path / "a", {"kernels": "native"}, CPUS[0])
    last = run_cpu(processed, tmp_path / "b", {"kernels": "native"}, CPUS[-1])
    assert first["m.safetensors"] != last["m.safetensors"]
