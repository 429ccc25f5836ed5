"""Where and how torch computes. ``train.kernels: portable`` pins every library's kernels to code
that gives the same bytes on any x86-64 CPU; ``native`` lets each CPU use its fastest."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from mnist_pipeline.core.errors import PipelineError

if TYPE_CHECKING:
    import torch

# What torch and MKL read at their first computation for ``portable``.
PORTABLE_PINS = {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE"}
KERNELS = ("portable", "native")  # train.kernels
DEVICES = ("auto", "cpu", "cuda")  # train.device


def configure_torch(threads: int, kernels: str = "portable") -> None:
    """Pin the kernels and the thread count (float sums repeat only at a fixed one)."""
    portable = kernels == "portable"
    if portable:
        os.environ.update(PORTABLE_PINS)
    import torch

    torch.backends.mkldnn.enabled = not portable
    if portable:  # NNPACK's convolutions exist on AVX2 CPUs only, blocked by cache size
        torch.backends.nnpack.set_flags(False)
    torch.set_num_threads(threads)
    if portable and torch.backends.cpu.get_cpu_capability() != "DEFAULT":
        raise PipelineError(
            f"train.kernels=portable: torch already computed with "
            f"{torch.backends.cpu.get_cpu_capability()} kernels in this process; call "
            "runtime.configure_torch before any tensor op, or set train.kernels=native"
        )


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
