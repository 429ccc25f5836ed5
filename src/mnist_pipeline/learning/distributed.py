"""Data parallelism under torchrun: each rank steps its shard of every global minibatch and the
ranks sum their gradients, so a step is the one-process step; whatever ends the stage ends
every rank, and whatever ends a rank early is one error line."""

from __future__ import annotations

import datetime
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.distributed as dist
from torch import Tensor

from mnist_pipeline.core.cli import EXIT_BAD_INPUT, Interrupted
from mnist_pipeline.core.errors import PipelineError

TIMEOUT = "MNIST_PIPELINE_RANK_TIMEOUT"  # train.rank_timeout: how long a collective waits
LAUNCHER = "MNIST_PIPELINE_LAUNCHER"  # the pid of the stage whose ranks these are
STALLED = "stalled"  # a rank's report when a collective got no reply in train.rank_timeout


class Context(NamedTuple):
    rank: int = 0
    world: int = 1


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
    if ctx.world > 1:
        dist.all_reduce(tensor)
    return tensor


def finish(ctx: Context) -> None:
    if ctx.world > 1:
        dist.barrier()
        dist.destroy_process_group()


def launch(processes: int, rank_timeout: float, argv: list[str]) -> None:
    """Run this stage (``argv``) on ``processes`` ranks, torchrun's agent in this process."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import main as torchrun

    cores = len(os.sched_getaffinity(0))
    if processes > cores:
        raise PipelineError(
            f"train.processes: {processes} is more than the {cores} CPU cores this machine "
            f"gives the stage; set train.processes to at most {cores}"
        )
    logging.disable(logging.CRITICAL)  # torchrun's log: the line below says what happened
    os.environ |= {LAUNCHER: str(os.getpid()), TIMEOUT: str(rank_timeout), "OMP_NUM_THREADS": "1"}
    try:
        torchrun(["--standalone", f"--nproc-per-node={processes}", "--shutdown-timeout=5", *argv])
        return
    except SignalException as stop:
        raise Interrupted(stop.sigval) from None
    except ChildFailedError as err:
        failures = sorted(err.failures.items(), key=lambda item: item[1].timestamp)
    reports = [f.message for _, f in failures if f.exitcode == EXIT_BAD_INPUT]
    if own := [message for message in reports if message != STALLED]:
        raise PipelineError(own[0])  # a rank's own error line, mostly the same on every rank
    if reports:  # torchrun SIGKILLs the ranks that ignore its SIGTERM, as a stopped one does
        stalled = ", ".join(str(r) for r, f in failures if f.exitcode == -signal.SIGKILL)
        raise PipelineError(
            f"train: rank {stalled or '?'} of {processes} made no progress for "
            f"train.rank_timeout={rank_timeout:g} s (stopped or hung); the run was ended and "
            "nothing was written; rerun, or raise train.rank_timeout on a busy machine"
        )
    rank, first = next(((r, f) for r, f in failures if f.exitcode < 0), failures[0])
    if first.exitcode == 1:
        raise SystemExit(1)  # a rank's traceback (a bug), shown as it is
    how = f"was killed by {first.signal_name()}" if first.exitcode < 0 else "ended early"
    oom = " (what the out-of-memory killer sends)" if first.exitcode == -signal.SIGKILL else ""
    raise PipelineError(
        f"train: rank {rank} of {processes} {how}{oom}; the other ranks were stopped and "
        "nothing was written; lower train.processes or train.batch_size, or free memory"
    )


def as_rank(main: Callable[[list[str] | None], None]) -> Callable[[list[str] | None], None]:
    """``main`` as a rank of ``launch``: it hands its error line to ``launch`` (error file)."""
    if LAUNCHER not in os.environ or "WORLD_SIZE" not in os.environ:
        return main

    def rank(argv: list[str] | None = None) -> None:
        threading.Thread(target=_watch, args=(int(os.environ[LAUNCHER]),), daemon=True).start()
        try:
            main(argv)
            return
        except Interrupted as stop:  # launch stopped the ranks, and says why
            raise SystemExit(128 + stop.args[0]) from None
        except PipelineError as err:
            message = str(err)
        except RuntimeError as err:  # gloo's: a peer that stopped answering, or left
            if "gloo" not in str(err):
                raise
            if "Timed out" not in str(err):
                raise SystemExit(3) from None  # launch reports the peer's own failure
            message = STALLED
        with open(os.environ["TORCHELASTIC_ERROR_FILE"], "w", encoding="utf-8") as out:
            json.dump({"message": message, "timestamp": int(time.time())}, out)
        raise SystemExit(EXIT_BAD_INPUT)

    return rank


def _watch(launcher: int) -> None:
    """End this rank with the stage: torchrun puts it out of reach of the stage's group."""
    while os.getppid() == launcher:
        time.sleep(0.2)
    os._exit(1)
