"""Where and how torch computes: kernels, thread count, device.

A CPU's instruction set changes float results, so ``train.kernels`` pins ATen's, MKL's,
oneDNN's and NNPACK's choices: ``portable`` (the same bytes on any x86-64 CPU, Intel or
AMD), ``avx2`` (the same bytes on any x86-64 CPU with AVX2 and FMA, Intel or AMD: ATen's
AVX2 kernels, GEMMs on OpenBLAS's Haswell kernel, core/openblas.py) or ``native`` (one
machine); docs/kernels.md explains. torch and MKL read the pins at their first
computation, hence ``configure_torch`` before any tensor op.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from mnist_pipeline.core.errors import PipelineError

if TYPE_CHECKING:
    import torch

# train.kernels -> (environment read by torch/MKL at their first computation, ATen capability)
KERNEL_PINS: dict[str, tuple[dict[str, str], str]] = {
    "portable": ({"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE"}, "DEFAULT"),
    "avx2": ({"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "COMPATIBLE"}, "AVX2"),
}
KERNELS = (*KERNEL_PINS, "native")  # train.kernels
DEVICES = ("auto", "cpu", "cuda")  # train.device


def configure_torch(threads: int, kernels: str = "portable") -> None:
    """Pin the kernels and the thread count (float sums repeat only at a fixed one); call
    before any tensor op."""
    pins = KERNEL_PINS.get(kernels)
    if pins is not None:
        os.environ.update(pins[0])
    import torch

    torch.backends.mkldnn.enabled = pins is None
    if pins is not None:  # NNPACK's convolutions exist on AVX2 CPUs only, blocked by cache size
        torch.backends.nnpack.set_flags(False)
    torch.set_num_threads(threads)
    if pins is None:
        return
    cpu = torch.cpu.get_capabilities()
    if pins[1] == "AVX2" and not (cpu.get("avx2") and cpu.get("fma3")):
        raise PipelineError(
            f"train.kernels={kernels} needs a CPU with AVX2 and FMA, and this one lacks them; "
            "use train.kernels=portable (any x86-64 CPU) or native"
        )
    if torch.backends.cpu.get_cpu_capability() != pins[1]:
        raise PipelineError(
            f"train.kernels={kernels}: torch already computed with "
            f"{torch.backends.cpu.get_cpu_capability()} kernels in this process; call "
            "runtime.configure_torch before any tensor op, or set train.kernels=native"
        )
    if pins[1] == "AVX2":
        from mnist_pipeline.core.openblas import route_gemms

        route_gemms()


def resolve_device(name: str) -> torch.device:
    """``train.device`` as a torch device; under torchrun, rank ``LOCAL_RANK``'s own GPU
    (NCCL needs one per process, so more ranks on a node than GPUs is refused)."""
    import torch

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise PipelineError(
            "train.device=cuda but torch sees no CUDA GPU here; use train.device=auto or cpu"
        )
    if name != "cuda":
        return torch.device(name)
    local_rank, gpus = int(os.environ.get("LOCAL_RANK", "0")), torch.cuda.device_count()
    if local_rank >= gpus:
        raise PipelineError(
            f"train.processes: rank {local_rank} has no GPU of its own ({gpus} visible); "
            f"set train.processes <= {gpus} or train.device=cpu"
        )
    torch.cuda.set_device(local_rank)
    return torch.device("cuda", local_rank)
