"""Multi-process data-parallel training with ``torch.distributed`` (torchrun).

The train stage runs unchanged under ``torchrun --nproc_per_node=N``; with
``train.processes: N`` it re-launches itself that way (``stages/train.py``). Every rank
draws the same epoch permutation (same seed) and cuts the same global minibatches; each
takes its contiguous shard of every minibatch (``shard``). Gradients are combined so a
step equals the single-process step on the whole global batch: each rank scales its
mean-loss gradient by ``shard_size / batch_size`` and the ranks *sum* — through
``DistributedDataParallel`` for autograd (which averages, hence the extra ``world``
factor) and an explicit ``all_reduce`` for the hand-derived engine, which never calls
``backward()``. gloo on CPU, nccl on CUDA. Rank 0 alone writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor


@dataclass(frozen=True)
class Context:
    rank: int = 0
    world: int = 1

    @property
    def active(self) -> bool:
        return self.world > 1


def init(device: torch.device) -> Context:
    """Join the process group torchrun set up (a no-op single-process context otherwise)."""
    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return Context()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Context(dist.get_rank(), dist.get_world_size())


def shard(batch: Tensor, ctx: Context) -> Tensor:
    """This rank's contiguous piece of a global minibatch (sizes differ by at most one)."""
    return batch.tensor_split(ctx.world)[ctx.rank] if ctx.active else batch


def sum_(tensor: Tensor, ctx: Context) -> Tensor:
    """In-place sum over ranks (identity in a single process)."""
    if ctx.active:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def finish(ctx: Context) -> None:
    if ctx.active:
        dist.barrier()
        dist.destroy_process_group()
