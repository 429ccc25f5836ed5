"""``PipelineError``: the one exception a user should see, one line saying what is wrong, where
(file, key or value) and how to fix it; ``cli.entry_point`` prints it. Anything else is a bug."""

import unicodedata
from collections.abc import Sequence


class PipelineError(Exception):
    """A bad input or environment problem, described in one actionable line."""


def printable(text: object) -> str:
    """``text`` for a terminal line: control and format characters (ANSI escapes, newlines,
    bidi overrides) as ``\\x1b``-style escapes, the rest as is."""
    return "".join(
        ch.encode("unicode_escape").decode("ascii")
        if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp")
        else ch
        for ch in str(text)
    )


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
