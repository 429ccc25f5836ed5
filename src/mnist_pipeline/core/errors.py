"""``PipelineError``: the one exception a user should see, one line saying what is wrong, where
(file, key or value) and how to fix it; ``cli.entry_point`` prints it. Anything else is a bug."""

from collections.abc import Sequence


class PipelineError(Exception):
    """A bad input or environment problem, described in one actionable line."""


def printable(text: object) -> str:
    """``text`` for one terminal or error line: every non-printable character (newlines, ANSI
    escapes, bidi overrides) escaped as ``\\n``, ``\\x1b``, ``\\u202e``; nothing quoted."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


def shown(value: object, limit: int = 200) -> str:
    """``repr(value)`` for an error line: control characters escaped, long values cut."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def dotted(path: Sequence[str | int]) -> str:
    """A key path as text: ``train.hidden[1]``, ``stages.train.deps[0]``."""
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")


def one_line(err: Exception) -> str:
    """A pydantic ``ValidationError`` as ``where: what (got value)``, one line."""
    first = err.errors()[0]  # type: ignore[attr-defined]
    loc = list(first["loc"])
    row = f"row {loc.pop(0) + 1}" if loc and isinstance(loc[0], int) else ""  # a CSV's rows
    where = ": ".join(part for part in (row, dotted(loc)) if part) or "value"
    return f"{where}: {first['msg']} (got {first.get('input')!r})"
