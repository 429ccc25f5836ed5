"""The one exception type a user should ever see from a stage.

A ``PipelineError`` carries a single line that says what is wrong, where (file, key or
value) and how to fix it. ``cli.run_stage`` prints it and exits non-zero; anything else
is a bug and keeps its traceback.
"""


class PipelineError(Exception):
    """A bad input or environment problem, described in one actionable line."""
