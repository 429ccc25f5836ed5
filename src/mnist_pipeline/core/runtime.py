"""Where and how torch computes: kernels, thread count, device.

Same commit and params must give the same bytes on any x86-64 CPU, and a CPU's
instruction set changes float results: torch picks its vectorised kernels (ATen: scalar,
AVX2 or AVX-512, with or without FMA) and its BLAS (MKL) code path from the CPU it runs
on, and oneDNN JIT-compiles convolutions for it. ``train.kernels: portable`` (the
default) pins all three to one code path that every x86-64 CPU runs identically:

- ``ATEN_CPU_CAPABILITY=default``: ATen's non-vectorised kernels;
- ``MKL_CBWR=COMPATIBLE``: MKL's SSE2 branch, the one MKL documents as reproducible across
  Intel and non-Intel CPUs (fixed blocking, deterministic reductions);
- oneDNN off (``torch.backends.mkldnn``): convolutions through ATen + MKL instead.

torch reads the first two lazily, when it first computes, so ``configure_torch`` must run
before any tensor op in the process: every stage calls it right after reading its params.
It checks ATen's choice and fails loudly if something computed first. ``native`` lets each
CPU use its fastest kernels: faster (see the README), repeatable on one machine only.

Float sums are also only bit-repeatable at a fixed thread count: ``train.threads`` is a
param, so it is part of what DVC tracks.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from mnist_pipeline.core.errors import PipelineError

if TYPE_CHECKING:
    import torch

KERNELS = ("portable", "native")  # train.kernels
DEVICES = ("auto", "cpu", "cuda")  # train.device
PORTABLE_ENV = {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE"}


def configure_torch(threads: int, kernels: str = "portable") -> None:
    """Pin the kernels (``portable`` or ``native``) and the thread count; call before any op."""
    if kernels == "portable":
        os.environ.update(PORTABLE_ENV)  # read by torch/MKL at their first computation
    import torch

    torch.backends.mkldnn.enabled = kernels != "portable"
    if kernels == "portable" and torch.backends.cpu.get_cpu_capability() != "DEFAULT":
        raise PipelineError(
            "train.kernels=portable: torch already computed with "
            f"{torch.backends.cpu.get_cpu_capability()} kernels in this process; call "
            "runtime.configure_torch before any tensor op, or set train.kernels=native"
        )
    torch.set_num_threads(threads)


def resolve_device(name: str) -> torch.device:
    """``train.device`` as a torch device; under torchrun, rank ``LOCAL_RANK``'s own GPU.

    NCCL needs one GPU per process, so more ranks on a node than GPUs is refused up front
    (rather than every rank landing on ``cuda:0``).
    """
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
