"""The one entry-point wrapper: every ``main`` (stages and tools) goes through it.

``entry_point(main)`` turns a ``PipelineError`` into one ``error: ...`` line on stderr and
exit status 2, so DVC stops the pipeline with a message instead of a traceback.
"""

import functools
import logging
import sys
from collections.abc import Callable

from mnist_pipeline.core.errors import PipelineError

EXIT_BAD_INPUT = 2


def setup_logging() -> None:
    """One plain line per message on stderr (DVC shows it as the stage's output)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")


def entry_point(
    main: Callable[[list[str] | None], int | None],
) -> Callable[[list[str] | None], int]:
    """``main(argv)`` -> exit status: its own (``None`` is 0), or 2 on a ``PipelineError``."""

    @functools.wraps(main)
    def run(argv: list[str] | None = None) -> int:
        setup_logging()
        try:
            return main(argv) or 0
        except PipelineError as err:
            print(f"error: {err}", file=sys.stderr)
            return EXIT_BAD_INPUT

    return run


def run_stage(main: Callable[[], None]) -> int:
    """A stage script's ``main()`` (arguments from ``sys.argv``) through ``entry_point``."""
    return entry_point(lambda _argv: main())(None)
