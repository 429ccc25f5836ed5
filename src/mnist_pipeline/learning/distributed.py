"""Data-parallel training under torchrun: each rank takes its contiguous shard of every
global minibatch and the ranks sum their gradients, each scaled by ``shard_size /
batch_size``, so a step equals the single-process one; rank 0 alone writes. ``launch``
starts the ranks and owns their lifetime."""

from __future__ import annotations

import contextlib
import glob
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import IO

import torch
import torch.distributed as dist
from torch import Tensor

from mnist_pipeline.core.cli import EXIT_BAD_INPUT
from mnist_pipeline.core.errors import PipelineError


@dataclass(frozen=True)
class Context:
    rank: int = 0
    world: int = 1

    @property
    def active(self) -> bool:
        return self.world > 1


def init(device: torch.device) -> Context:
    """Join the process group torchrun set up (a single-process context otherwise)."""
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


# Peak RSS of one rank besides the data, and of torchrun's agent, rounded up.
RANK_MEMORY_BYTES = 600 * 2**20
TORCHRUN_MEMORY_BYTES = 520 * 2**20
STOP_TIMEOUT_S = 5.0  # for the ranks to unwind after SIGTERM, before SIGKILL
# torch.distributed's log lines ("W1201 17:00:00.123456 4242 torch/.../api.py:123] ...").
_TORCH_LOG = re.compile(r"^\[?[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+ ")
_RANK_PREFIX = re.compile(r"^\[rank\d+\]: ?")
_TRACEBACK_STARTS = ("Traceback (most recent", "During handling of", "The above exception")
_FAILED_RANK = re.compile(r"exitcode\s*:\s*(-?\d+).*?local_rank\s*:\s*(\d+)")


def check_capacity(processes: int, data_bytes: int) -> None:
    """Refuse more ranks than this machine's cores, or than its free memory holds."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if processes > (cores or 1):
        raise PipelineError(
            f"train.processes: {processes} is more than the {cores} CPU cores this machine "
            f"gives the stage; set train.processes to at most {cores}"
        )
    available = _available_memory()
    need = TORCHRUN_MEMORY_BYTES + processes * (RANK_MEMORY_BYTES + data_bytes)
    if available is not None and need > available:
        fit = max((available - TORCHRUN_MEMORY_BYTES) // (RANK_MEMORY_BYTES + data_bytes), 1)
        raise PipelineError(
            f"train.processes: {processes} ranks need about {need / 2**30:.1f} GiB "
            f"({(RANK_MEMORY_BYTES + data_bytes) / 2**20:.0f} MiB each) but "
            f"{available / 2**30:.1f} GiB is free; set train.processes to at most {fit}"
        )


def _available_memory() -> int | None:
    """MemAvailable from /proc/meminfo (bytes), None where there is none."""
    with contextlib.suppress(OSError), open("/proc/meminfo", encoding="ascii") as meminfo:
        for line in meminfo:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return None


def launch(processes: int, argv: list[str]) -> int:
    """Run this stage's ``argv`` on ``processes`` ranks under torchrun. torchrun leaves its
    ranks running if killed, so the stage is their subreaper and stops them on every path."""
    if sys.platform == "linux":  # orphaned descendants are re-parented to this process
        import ctypes

        pr_set_child_subreaper = 36
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_child_subreaper, 1, 0, 0, 0)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    proc = subprocess.Popen(
        [*command, f"--nproc_per_node={processes}", *argv],
        stderr=subprocess.PIPE,
        start_new_session=True,
        env={"OMP_NUM_THREADS": "1", **os.environ},  # torchrun's default, without its banner
        text=True,
        errors="replace",
    )
    relay = _Relay(proc.stderr)
    relay.start()
    try:
        code = proc.wait()
    except BaseException:
        relay.stopping = True  # the stage says why it stops: the ranks' echo would repeat it
        raise
    finally:
        _stop(proc)
        relay.join()
    if code == 0:
        return 0
    failed = next(filter(None, map(_FAILED_RANK.search, reversed(relay.torchrun))), None)
    if failed is not None and int(failed[1]) < 0:
        name = signal.Signals(-int(failed[1])).name
        why = " (what the out-of-memory killer sends)" if name == "SIGKILL" else ""
        raise PipelineError(
            f"train: rank {failed[2]} of {processes} was killed by {name}{why}; the other "
            "ranks were stopped and nothing was written; lower train.processes or "
            "train.batch_size, or free memory"
        )
    if failed is not None and int(failed[1]) == EXIT_BAD_INPUT:
        return EXIT_BAD_INPUT  # the rank's one error line is shown already
    sys.stderr.writelines(relay.held)  # a rank's own traceback: a bug, shown as it is
    return code


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    for path in glob.glob(f"/proc/{pid}/task/*/children"):
        with contextlib.suppress(OSError), open(path, encoding="ascii") as handle:
            kids += map(int, handle.read().split())
    return kids


def _descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (Linux /proc; empty elsewhere)."""
    found, todo = [], [pid]
    while todo:
        kids = _children(todo.pop())
        found += kids
        todo += kids
    return [pid for pid in found if _alive(pid)]


def _alive(pid: int) -> bool:
    """Running, not a zombie (a zombie holds no files open and writes nothing)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _stop(proc: subprocess.Popen[str]) -> None:
    """SIGTERM to every descendant, ``STOP_TIMEOUT_S`` for the ranks to go (torchrun follows
    them), then SIGKILL to what is left; every child reaped."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in _descendants(os.getpid()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while proc.poll() is None or _descendants(os.getpid()):
            ranks = [pid for pid in _descendants(os.getpid()) if pid != proc.pid]
            if not ranks or time.monotonic() > deadline:
                break
            _reap(proc)
            time.sleep(0.05)
        if proc.poll() is None and not ranks:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    _reap(proc)


def _reap(proc: subprocess.Popen[str]) -> None:
    """Collect the exited orphans the subreaper inherited (torchrun is Popen's to wait on)."""
    for pid in _children(os.getpid()):
        if pid != proc.pid and not _alive(pid):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)


class _Relay(threading.Thread):
    """Forwards torchrun's stderr line by line, holding back torchrun's own log (in
    ``torchrun``, for the failure line) and tracebacks (``held``); a rank's ``error:`` line
    is shown once, however many ranks print it."""

    def __init__(self, stream: IO[str] | None) -> None:
        super().__init__(daemon=True)
        self.stream = stream
        self.stopping = False
        self.torchrun: deque[str] = deque(maxlen=200)
        self.held: list[str] = []
        self._shown: set[str] = set()

    def run(self) -> None:
        in_traceback = to_the_end = False
        for line in self.stream or ():
            text = _RANK_PREFIX.sub("", line, count=1)  # torch's "[rank0]: " on a traceback
            if _TORCH_LOG.match(line):
                self.torchrun.append(line)
            elif to_the_end or in_traceback or text.startswith(_TRACEBACK_STARTS):
                self.held.append(line)  # torchrun's ChildFailedError report runs to the end
                self.torchrun.append(line)
                in_traceback = text[:1].isspace() or text.startswith(_TRACEBACK_STARTS)
                to_the_end = to_the_end or "ChildFailedError" in line
            elif not self.stopping and not (line.startswith("error: ") and line in self._shown):
                self._shown.add(line)
                sys.stderr.write(line)
                sys.stderr.flush()
