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
import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
import yaml

from conftest import REPO, make_split, run
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


def test_portable_kernels_after_torch_computed_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    with pytest.raises(PipelineError, match=r"already computed with AVX2 kernels"):
        configure_torch(1, "portable")


@pytest.fixture(scope="module")
def processed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("processed")
    save_split(make_split(160, 1), data / "train.safetensors")
    save_split(make_split(40, 2), data / "test.safetensors")
    return data


# One process per CPU runs every config: each stage script's ``main`` in turn, in each
# config's folder (argv: JSON of [[stage script, its arguments], ...], then the folders), so
# torch is imported once per CPU, under qemu too. The oldest CPU (the only one capped at
# ATen's default kernels) has no NNPACK and glibc's SSE2 libm.
RUN_ALL = """
import contextlib, json, os, runpy, sys, torch
from mnist_pipeline.core.cli import entry_point
if os.environ["ATEN_CPU_CAPABILITY"] == "default":
    torch.backends.nnpack.set_flags(False)
for script, args in json.loads(sys.argv[1]):
    main = runpy.run_path(script)["main"]
    for folder in sys.argv[2:]:
        with contextlib.chdir(folder):
            if code := entry_point(main)(args):
                raise SystemExit(code)
"""
STAGE_ARGS = {
    "train": ["--history", "log.csv", "--onnx", "m.onnx"],
    "evaluate": ["--metrics", "eval.json", "--per-class", "pc.csv", "--confusion", "c.csv",
                 "--counts", "n.csv", "--predictions", "p.csv"],
}  # fmt: skip


def run_cpu(
    processed: Path, work: Path, configs: dict[str, dict[str, object]], cpu: Cpu
) -> dict[str, dict[str, str]]:
    """Train + evaluate (2 epochs) of each config in ``work/<config>`` as ``cpu`` would, all
    in one process; per config, the md5 of every file written."""
    capability, mkl, cores, model = cpu
    prefix = ["taskset", "-c", cores, "env", f"ATEN_CPU_CAPABILITY={capability}"]
    prefix += [f"MKL_ENABLE_INSTRUCTIONS={mkl}"] * bool(mkl)
    if cpu == CPUS[0]:
        prefix.append("GLIBC_TUNABLES=glibc.cpu.hwcaps=-AVX,-AVX2,-FMA,-AVX512F")
    prefix += [str(QEMU), "-cpu", model] if model else []
    folders = []
    for name, train in configs.items():
        raw = yaml.safe_load((REPO / "params.yaml").read_text())
        raw["train"].update({"epochs": 2, **train})
        folders.append(work / name)
        folders[-1].mkdir(parents=True)
        (folders[-1] / "params.yaml").write_text(yaml.safe_dump(raw))
    data = ["--params", "params.yaml", "--data", str(processed), "--model", "m.safetensors"]
    stages = [
        (str(REPO / "stages" / f"{name}.py"), data + args) for name, args in STAGE_ARGS.items()
    ]
    command = [*prefix, sys.executable, "-c", RUN_ALL, json.dumps(stages), *map(str, folders)]
    result = run(command, work, False, REPO / "src")
    assert result.returncode == 0, result.stderr
    return {
        folder.name: {
            p.name: hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(folder.iterdir())
            if p.name != "params.yaml"
        }
        for folder in folders
    }


@pytest.fixture(scope="module")
def portable(processed: Path, tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    """Per CPU of ``CPUS``, per config: the files its run wrote."""
    return [run_cpu(processed, tmp_path_factory.mktemp("cpu"), CONFIGS, cpu) for cpu in CPUS]


# Subprocess: each CPU is emulated from the process's start (env caps, taskset).
@pytest.mark.slow
@pytest.mark.parametrize("config", list(CONFIGS))
def test_portable_kernels_write_the_same_bytes_on_every_cpu(
    portable: list[dict], config: str
) -> None:
    hashes = [runs[config] for runs in portable]
    assert len(hashes[0]) == 8  # model, ONNX, log, metrics, per-class, confusion x2, predictions
    for cpu, other in zip(CPUS[1:], hashes[1:], strict=True):
        assert other == hashes[0], f"{cpu} wrote other bytes than {CPUS[0]}"


@pytest.fixture(scope="module")
def other_vendor(processed: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Per config: the files the run as the other vendor's CPU (qemu) wrote."""
    return run_cpu(processed, tmp_path_factory.mktemp("qemu"), CONFIGS, OTHER_VENDOR)


# Subprocess: the other vendor's CPU is a qemu-user process.
@pytest.mark.slow
@pytest.mark.skipif(QEMU is None, reason="needs qemu-x86_64 (Debian's qemu-user, .ci/debian.sh)")
@pytest.mark.parametrize("config", list(CONFIGS))
def test_portable_kernels_write_the_same_bytes_on_another_vendors_cpu(
    portable: list[dict], other_vendor: dict, config: str
) -> None:
    here = portable[-1][config]  # CPUS[-1]: this CPU, all its cores
    assert other_vendor[config] == here, f"{OTHER_VENDOR[-1]} (qemu) wrote other bytes"


# Subprocess: each CPU is emulated from the process's start (env caps, taskset).
@pytest.mark.slow
def test_native_kernels_differ_between_cpus(processed: Path, tmp_path: Path) -> None:
    """The control: without the pins, the same run on two CPUs writes another model."""
    native = {"seed": {"kernels": "native"}}
    first = run_cpu(processed, tmp_path / "a", native, CPUS[0])["seed"]
    last = run_cpu(processed, tmp_path / "b", native, CPUS[-1])["seed"]
    assert first["m.safetensors"] != last["m.safetensors"]
