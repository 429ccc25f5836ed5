"""Data-parallel training under torchrun (``launch``): each rank takes its contiguous shard of
every global minibatch and the ranks sum their gradients, so a step is the one-process step."""

from __future__ import annotations

import datetime
import os
from typing import NamedTuple

import torch
import torch.distributed as dist
from torch import Tensor

TIMEOUT = "MNIST_PIPELINE_RANK_TIMEOUT"  # train.rank_timeout: how long a collective waits


class Context(NamedTuple):
    rank: int = 0
    world: int = 1

    @property
    def active(self) -> bool:
        return self.world > 1


def init(device: torch.device) -> Context:
    """Join the process group torchrun set up (a single-process context otherwise)."""
    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return Context()
    timeout = datetime.timedelta(seconds=float(os.environ.get(TIMEOUT, 1800)))
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=timeout)
    return Context(dist.get_rank(), dist.get_world_size())


def shard(batch: Tensor, ctx: Context) -> Tensor:
    """This rank's contiguous piece of a global minibatch (sizes differ by at most one)."""
    return batch.tensor_split(ctx.world)[ctx.rank]


def sum_(tensor: Tensor, ctx: Context) -> Tensor:
    """In-place sum over ranks (identity in a single process)."""
    if ctx.active:
        dist.all_reduce(tensor)
    return tensor


def finish(ctx: Context) -> None:
    if ctx.active:
        dist.barrier()
        dist.destroy_process_group()
