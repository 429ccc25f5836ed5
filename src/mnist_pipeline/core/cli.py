"""Shared entry-point plumbing for the scripts in ``stages/``.

``run_stage(main)`` turns a ``PipelineError`` into one ``error: ...`` line on stderr and
exit status 2, so DVC stops the pipeline with a message instead of a traceback.
"""

import logging
import sys
from collections.abc import Callable

from mnist_pipeline.core.errors import PipelineError

EXIT_BAD_INPUT = 2


def setup_logging() -> None:
    """One plain line per message on stderr (DVC shows it as the stage's output)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")


def run_stage(main: Callable[[], None]) -> int:
    """Run a stage's ``main`` and map user-facing errors to a clean exit code."""
    setup_logging()
    try:
        main()
    except PipelineError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return 0
