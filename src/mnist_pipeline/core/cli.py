"""``entry_point(main)``, which every ``main`` (stages and tools) runs through: a
``PipelineError`` becomes one ``error: ...`` line and exit status 2, so DVC stops with a message,
not a traceback; SIGTERM, like Ctrl-C, unwinds the run (its temp files go)."""

import functools
import logging
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

from mnist_pipeline.core.errors import PipelineError, printable

EXIT_BAD_INPUT = 2


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGINT: unwinds ``with`` blocks (and so removes temp files) like Ctrl-C."""


def _interrupt(signum: int, frame: object) -> None:
    raise Interrupted(signum)


# SIGXFSZ ignored: a write over ``ulimit -f`` fails with EFBIG and gets its one line.
_HANDLERS = {signal.SIGTERM: _interrupt, signal.SIGINT: _interrupt, signal.SIGXFSZ: signal.SIG_IGN}


def entry_point(
    main: Callable[[list[str] | None], int | None],
) -> Callable[[list[str] | None], int]:
    """``main(argv)`` -> exit status: its own (``None`` is 0), 2 on a ``PipelineError``,
    128 + N on signal N (SIGTERM, SIGINT)."""

    @functools.wraps(main)
    def run(argv: list[str] | None = None) -> int:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        previous: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            previous = {n: signal.signal(n, h) for n, h in _HANDLERS.items()}
        try:
            return main(argv) or 0
        except PipelineError as err:
            print(f"error: {printable(str(err))}", file=sys.stderr)  # one line, always
            return EXIT_BAD_INPUT
        except Interrupted as stop:
            name = signal.Signals(stop.args[0]).name
            print(
                f"error: interrupted by {name}; temp files removed, nothing written",
                file=sys.stderr,
            )
            return 128 + stop.args[0]
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    return run


def run_stage(main: Callable[[list[str] | None], None], argv: list[str] | None = None) -> int:
    """A stage script's ``main(argv)`` (``None``: ``sys.argv``) through ``entry_point``: its
    exit status, so a test calls a stage in-process exactly as DVC runs it."""
    return entry_point(main)(argv)
