"""Same params, same bytes on other CPUs: the train and evaluate stages under every CPU
this machine can pretend to be.

torch picks its kernels from the CPU it runs on: ATen's vectorised code from
``ATEN_CPU_CAPABILITY`` (default / avx2 / avx512, capped at what the CPU has), MKL's code
path from ``MKL_ENABLE_INSTRUCTIONS`` (AVX2 = a CPU without AVX-512, SSE4_2 = an old
one), NNPACK's convolutions only on AVX2 CPUs (an old one runs without them), glibc's
libm variants from the CPU's features (``GLIBC_TUNABLES`` hides AVX, AVX2 and FMA from an
old one), the thread pool from the cores it may use. Another vendor's CPU runs under
qemu-user (Debian's ``qemu-user``): an Intel Haswell's CPUID, so MKL dispatches as on an
Intel CPU, and exact results for the approximate instructions (``rsqrtps``, ``rcpps``)
whose bits differ between Intel and AMD. With ``train.kernels: portable`` (the default)
every combination must write identical files, and with ``avx2`` every combination of an
AVX2 CPU, either vendor's; with ``native`` they differ, which is what proves this test can
see a difference at all.

    .venv/bin/python -m pytest tests/test_portability.py
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from conftest import REPO, make_split, stage
from mnist_pipeline.core import openblas
from mnist_pipeline.core.errors import PipelineError
from mnist_pipeline.core.runtime import KERNEL_PINS, configure_torch
from mnist_pipeline.data.splits import save_split

FLAGS = Path("/proc/cpuinfo").read_text().split()
AVX512 = "avx512f" in FLAGS
# (ATen capability, MKL instruction cap, CPU cores, qemu CPU model or None): the CPUs this
# machine can emulate, the oldest first (without NNPACK, see NO_NNPACK); ``avx2`` kernels
# run on the AVX2 ones (the others are refused).
CPUS: list[tuple[str, str | None, str, str | None]] = [
    ("default", "SSE4_2", "0", None),
    ("avx2", "AVX2", "0", None),
    ("avx2", "AVX2", "0,1", None),
    *([("avx512", None, "0,1", None)] if AVX512 else []),
]
OLDEST = {"portable": CPUS[0], "avx2": CPUS[1]}
# The other vendor's CPU, under qemu-user: an AMD EPYC on an Intel machine, else an Intel
# Haswell (AVX2 and FMA; qemu has no AVX-512).
QEMU = shutil.which("qemu-x86_64")
INTEL_HERE = "GenuineIntel" in FLAGS
OTHER_VENDOR = ("avx2", None, "0,1", "EPYC-Rome" if INTEL_HERE else "Haswell")
NO_QEMU = "needs qemu-x86_64 (Debian's qemu-user, .ci/debian.sh) for another vendor's CPU"
CONFIGS = {
    "seed": {},  # the notebook's linear softmax-MSE, hand-derived gradients, batch 16
    "mlp-2threads": {"model": "mlp", "hidden": [32], "activation": "relu", "threads": 2,
                     "loss": "cross_entropy", "optimizer": "adam", "lr": 0.003},
    "cnn": {"model": "cnn_bn", "channels": [4, 8], "hidden": [16], "gradients": "autograd",
            "activation": "relu", "batch_size": 32, "lr": 0.05},
}  # fmt: skip


# Every stage runs through a wrapper: a patch, then the stage.
RUN_STAGE = """
import runpy, sys
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""
# NNPACK runs on x86-64 CPUs with AVX2 and FMA only; the oldest CPU's runs turn it off
# before the stage starts, as such a CPU has it.
NO_NNPACK = """
import torch
torch.backends.nnpack.set_flags(False)
"""
# torch.optim.Adam's default per-tensor path: its torch.sqrt runs MKL's vector math, whose
# kernel on an AMD CPU starts from rsqrtps (other bits on Intel). The control below.
UNFUSED_ADAM = """
import torch
from mnist_pipeline.learning import optim
optim.OPTIMIZERS["adam"] = lambda params, lr, momentum, weight_decay: torch.optim.Adam(
    params, lr=lr, weight_decay=weight_decay)
"""

# The avx2 mode as it was: MKL's AVX2 branch, which MKL documents for Intel CPUs only (on
# an AMD one it runs its own dispatch), and no OpenBLAS. The control below.
MKL_AVX2 = """
from mnist_pipeline.core import openblas, runtime
runtime.KERNEL_PINS["avx2"] = ({"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2"}, "AVX2")
openblas.route_gemms = lambda: None
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


def test_the_routing_check_fails_where_torch_computes_its_own_gemms() -> None:
    """This process computes with MKL (portable kernels): the check must say so."""
    with pytest.raises(PipelineError, match=r"GEMMs still do not run on OpenBLAS"):
        openblas.check(openblas.load())


def test_a_torch_without_the_plt_imports_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(openblas, "plt_slots", lambda library: {})
    with pytest.raises(PipelineError, match=r"calls no sgemm_ / sgemv_ through its PLT"):
        openblas.route_gemms()


@pytest.fixture(scope="module")
def processed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("processed")
    save_split(make_split(320, 1), data / "train.safetensors")
    save_split(make_split(80, 2), data / "test.safetensors")
    return data


def stage_args(processed: Path) -> dict[str, list[str]]:
    """The train and evaluate stages' arguments, outputs in the working folder."""
    return {
        "train": ["--data", str(processed), "--model", "m.safetensors", "--history", "log.csv",
                  "--onnx", "m.onnx"],
        "evaluate": ["--data", str(processed), "--model", "m.safetensors", "--metrics",
                     "eval.json", "--per-class", "pc.csv", "--confusion", "c.csv",
                     "--counts", "n.csv", "--predictions", "p.csv"],
    }  # fmt: skip


def write_params(work: Path, train: dict[str, object], epochs: int = 2) -> None:
    """``work``/params.yaml: the project's, with ``train`` over its train section."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["train"].update({"epochs": epochs, **train})
    work.mkdir(parents=True)
    (work / "params.yaml").write_text(yaml.safe_dump(raw))


def run_cpu(
    processed: Path,
    work: Path,
    train: dict[str, object],
    cpu: tuple[str, str | None, str, str | None],
    patch: str = "",
) -> dict[str, str]:
    """Train + evaluate in ``work`` as that CPU would, ``patch`` (Python) run first in each
    stage; the md5 of every file they write."""
    capability, mkl, cores, model = cpu
    write_params(work, train)
    env = [
        "env",
        f"ATEN_CPU_CAPABILITY={capability}",
        *([f"MKL_ENABLE_INSTRUCTIONS={mkl}"] * bool(mkl)),
    ]
    prefix = ["taskset", "-c", cores, *env, *([str(QEMU), "-cpu", model] if model else [])]
    if cpu == CPUS[0]:
        patch += NO_NNPACK
        prefix.append(f"GLIBC_TUNABLES={OLD_GLIBC}")
    wrapper = work / "wrapper.py"
    wrapper.write_text(f"{patch}\n{RUN_STAGE}")
    for name, args in stage_args(processed).items():
        result = stage(name, "--params", "params.yaml", *args, cwd=work, prefix=prefix, via=wrapper)
        assert result.returncode == 0, result.stderr
    return {
        str(p.relative_to(work)): hashlib.md5(p.read_bytes()).hexdigest()
        for p in sorted(work.rglob("*"))
        if p.is_file() and p.name not in ("params.yaml", "wrapper.py")
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


@pytest.mark.parametrize("config", list(CONFIGS))
def test_avx2_kernels_leave_no_gemm_to_mkl(processed: Path, tmp_path: Path, config: str) -> None:
    """Every GEMM the train stage runs goes to OpenBLAS (MKL_VERBOSE lists MKL's calls);
    under portable, MKL runs them, which shows the listing works."""
    listed = {}
    for kernels in ("avx2", "portable"):
        work = tmp_path / kernels
        write_params(work, {**CONFIGS[config], "kernels": kernels}, epochs=1)
        args = stage_args(processed)["train"]
        env = ["env", "MKL_VERBOSE=1"]
        result = stage("train", "--params", "params.yaml", *args, cwd=work, prefix=env)
        assert result.returncode == 0, result.stderr
        listed[kernels] = result.stdout.count("MKL_VERBOSE SGEMM")
    assert listed["avx2"] == 0
    assert listed["portable"] > 0


@pytest.mark.slow
@pytest.mark.skipif(QEMU is None, reason=NO_QEMU)
@pytest.mark.parametrize("kernels", list(OLDEST))
@pytest.mark.parametrize("config", list(CONFIGS))
def test_pinned_kernels_write_the_same_bytes_on_another_vendors_cpu(
    processed: Path, tmp_path: Path, config: str, kernels: str
) -> None:
    train = {**CONFIGS[config], "kernels": kernels}
    here = run_cpu(processed, tmp_path / "here", train, CPUS[-1])
    other = run_cpu(processed, tmp_path / "other", train, OTHER_VENDOR)
    assert other == here, f"{OTHER_VENDOR[-1]} (qemu) wrote other bytes than this CPU"


@pytest.mark.slow
@pytest.mark.skipif(QEMU is None, reason=NO_QEMU)
def test_unfused_adam_differs_on_another_vendors_cpu(processed: Path, tmp_path: Path) -> None:
    """The control: the per-tensor Adam (MKL's vector-math sqrt) writes another model on the
    other vendor's CPU, even with portable kernels; that is what the fused one fixes."""
    train = {**CONFIGS["mlp-2threads"], "kernels": "portable"}
    here = run_cpu(processed, tmp_path / "here", train, CPUS[-1], UNFUSED_ADAM)
    other = run_cpu(processed, tmp_path / "other", train, OTHER_VENDOR, UNFUSED_ADAM)
    assert other["m.safetensors"] != here["m.safetensors"]


@pytest.mark.slow
@pytest.mark.skipif(QEMU is None, reason=NO_QEMU)
def test_mkl_avx2_branch_differs_on_another_vendors_cpu(processed: Path, tmp_path: Path) -> None:
    """The control for avx2: MKL's own AVX2 branch, in place of OpenBLAS, writes another
    model on the other vendor's CPU; that is what routing the GEMMs fixes."""
    train = {**CONFIGS["mlp-2threads"], "kernels": "avx2"}
    here = run_cpu(processed, tmp_path / "here", train, CPUS[-1], MKL_AVX2)
    other = run_cpu(processed, tmp_path / "other", train, OTHER_VENDOR, MKL_AVX2)
    assert other["m.safetensors"] != here["m.safetensors"]
