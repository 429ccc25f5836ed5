"""``entry_point(main)``, which every stage and tool runs through: a ``PipelineError`` is one
``error: ...`` line and exit 2; SIGTERM, like Ctrl-C, unwinds the run (temp files go)."""

import functools
import logging
import signal
import sys
import threading
from collections.abc import Callable

from mnist_pipeline.core.errors import PipelineError, printable

EXIT_BAD_INPUT = 2
Main = Callable[[list[str] | None], int | None]


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGINT: unwinds ``with`` blocks (and so removes temp files) like Ctrl-C."""


def _interrupt(signum: int, frame: object) -> None:
    raise Interrupted(signum)


# SIGXFSZ ignored: a write over ``ulimit -f`` fails with EFBIG and gets its one line.
_HANDLERS = {signal.SIGTERM: _interrupt, signal.SIGINT: _interrupt, signal.SIGXFSZ: signal.SIG_IGN}


def entry_point(main: Main) -> Callable[[list[str] | None], int]:
    """``main(argv)`` -> its exit status (None: 0), 2 on a PipelineError, 128 + N on signal N."""

    @functools.wraps(main)
    def run(argv: list[str] | None = None) -> int:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        in_main = threading.current_thread() is threading.main_thread()
        previous = {n: signal.signal(n, h) for n, h in _HANDLERS.items()} if in_main else {}
        try:
            return main(argv) or 0
        except PipelineError as err:
            print(f"error: {printable(str(err))}", file=sys.stderr)  # one line, always
            return EXIT_BAD_INPUT
        except Interrupted as stop:
            why = f"interrupted by {signal.Signals(stop.args[0]).name}"
            print(f"error: {why}; temp files removed, nothing written", file=sys.stderr)
            return 128 + stop.args[0]
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    return run
