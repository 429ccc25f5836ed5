"""The train stage on ``train.processes`` ranks: ``launch`` runs torchrun's agent in the
stage's own process (no new session, so whatever kills the stage or its process group kills
the agent) and turns whatever ends the ranks early into one line; ``as_rank`` runs the stage
as one rank, which ends with the stage and hands its error to ``launch``."""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, NoReturn

from mnist_pipeline.core.cli import EXIT_BAD_INPUT, Interrupted
from mnist_pipeline.core.errors import PipelineError
from mnist_pipeline.learning.distributed import TIMEOUT

if TYPE_CHECKING:
    from torch.distributed.elastic.multiprocessing.errors import ProcessFailure

LAUNCHER = "MNIST_PIPELINE_LAUNCHER"  # the pid of the stage whose ranks these are
STALLED = "stalled"  # a rank's report when a collective got no reply in train.rank_timeout


def launch(processes: int, rank_timeout: float, argv: list[str]) -> None:
    """Run this stage (``argv``) on ``processes`` ranks, torchrun's agent in this process."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import main as torchrun

    logging.disable(logging.CRITICAL)  # torchrun's log: the line below says what happened
    os.environ |= {LAUNCHER: str(os.getpid()), TIMEOUT: str(rank_timeout), "OMP_NUM_THREADS": "1"}
    args = ["--standalone", f"--nproc-per-node={processes}", "--shutdown-timeout=5", *argv]
    try:
        torchrun(args)
    except SignalException as stop:
        raise Interrupted(stop.sigval) from None
    except ChildFailedError as err:
        failures = sorted(err.failures.items(), key=lambda item: item[1].timestamp)
        raise _failure(failures, processes, rank_timeout) from None


def _failure(
    failures: list[tuple[int, ProcessFailure]], processes: int, rank_timeout: float
) -> BaseException:
    """What to raise for the ranks that ended early (``failures``, the first one first)."""
    reports = [f.message for _, f in failures if f.exitcode == EXIT_BAD_INPUT]
    own = [message for message in reports if message != STALLED]
    if own:  # a rank's own error line, mostly the same on every rank
        return PipelineError(own[0])
    if reports:  # torchrun SIGKILLs the ranks that ignore its SIGTERM, as a stopped one does
        stalled = ", ".join(str(r) for r, f in failures if f.exitcode == -signal.SIGKILL)
        return PipelineError(
            f"train: rank {stalled or '?'} of {processes} made no progress for "
            f"train.rank_timeout={rank_timeout:g} s (stopped or hung); the run was ended and "
            "nothing was written; rerun, or raise train.rank_timeout on a busy machine"
        )
    rank, first = next(((r, f) for r, f in failures if f.exitcode < 0), failures[0])
    if first.exitcode == 1:
        return SystemExit(1)  # a rank's traceback (a bug), shown as it is
    how = f"was killed by {first.signal_name()}" if first.exitcode < 0 else "ended early"
    oom = " (what the out-of-memory killer sends)" if first.exitcode == -signal.SIGKILL else ""
    return PipelineError(
        f"train: rank {rank} of {processes} {how}{oom}; the other ranks were stopped and "
        "nothing was written; lower train.processes or train.batch_size, or free memory"
    )


def as_rank(main: Callable[[], None]) -> Callable[[], None]:
    """``main`` as a torchrun rank runs it (unchanged outside torchrun): it ends with the
    stage that launched it, and its error goes to torchrun's error file for ``launch``."""
    if LAUNCHER not in os.environ or "WORLD_SIZE" not in os.environ:
        return main

    def rank() -> None:
        threading.Thread(target=_watch, args=(int(os.environ[LAUNCHER]),), daemon=True).start()
        try:
            main()
        except Interrupted as stop:  # launch stopped the ranks, and says why
            raise SystemExit(128 + stop.args[0]) from None
        except PipelineError as err:
            _report(str(err))
        except RuntimeError as err:  # gloo's: a peer that stopped answering, or left
            if "gloo" not in str(err):
                raise
            if "Timed out" in str(err):
                _report(STALLED)
            raise SystemExit(3) from None  # launch reports the peer's own failure

    return rank


def _watch(launcher: int) -> None:
    """Ends this rank once the stage is gone: torchrun starts each rank in a session of its
    own, out of reach of a kill to the stage's process group."""
    while os.getppid() == launcher:
        time.sleep(0.2)
    os._exit(1)


def _report(message: str) -> NoReturn:
    """Hand ``message`` to ``launch`` through torchrun's error file, and exit 2."""
    with open(os.environ["TORCHELASTIC_ERROR_FILE"], "w", encoding="utf-8") as out:
        json.dump({"message": message, "timestamp": int(time.time())}, out)
    raise SystemExit(EXIT_BAD_INPUT)


def check_cores(processes: int) -> None:
    """Refuse more ranks than the CPU cores this stage may use."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if processes > (cores or 1):
        raise PipelineError(
            f"train.processes: {processes} is more than the {cores} CPU cores this machine "
            f"gives the stage; set train.processes to at most {cores}"
        )
