"""The one entry-point wrapper: every ``main`` (stages and tools) goes through it.

``entry_point(main)`` turns a ``PipelineError`` into one ``error: ...`` line on stderr and
exit status 2, so DVC stops the pipeline with a message instead of a traceback. SIGTERM
(like Ctrl-C's SIGINT) unwinds the run, so its temp files and directories are removed on
the way out; the exit status is then 128 + the signal number. SIGXFSZ is ignored, so a
write over the file-size limit (``ulimit -f``) fails with EFBIG and gets its one line.
"""

import functools
import logging
import signal
import sys
import threading
from collections.abc import Callable

from mnist_pipeline.core.errors import PipelineError, printable

EXIT_BAD_INPUT = 2


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGINT: unwinds ``with`` blocks (and so removes temp files) like Ctrl-C."""


def _interrupt(signum: int, frame: object) -> None:
    raise Interrupted(signum)


def entry_point(
    main: Callable[[list[str] | None], int | None],
) -> Callable[[list[str] | None], int]:
    """``main(argv)`` -> exit status: its own (``None`` is 0), 2 on a ``PipelineError``,
    128 + N on signal N (SIGTERM, SIGINT)."""

    @functools.wraps(main)
    def run(argv: list[str] | None = None) -> int:
        # One plain line per message on stderr (DVC shows it as the stage's output).
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        signals = (signal.SIGTERM, signal.SIGINT)
        in_main_thread = threading.current_thread() is threading.main_thread()
        previous = {n: signal.signal(n, _interrupt) for n in signals if in_main_thread}
        if in_main_thread:  # over the file-size limit: EFBIG from the write, not a kill
            previous[signal.SIGXFSZ] = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
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


def run_stage(main: Callable[[], None]) -> int:
    """A stage script's ``main()`` (arguments from ``sys.argv``) through ``entry_point``."""
    return entry_point(lambda _argv: main())(None)
