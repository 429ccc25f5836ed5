"""``PipelineError``, the one exception a user sees: one line naming what, where and the fix."""

import unicodedata


class PipelineError(Exception):
    """A bad input or environment (``cli.entry_point`` prints it); anything else is a bug."""


def printable(text: object) -> str:
    """``text`` for a terminal line: control and format characters escaped (``\\x1b``)."""
    return "".join(
        ch.encode("unicode_escape").decode("ascii")
        if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp")
        else ch
        for ch in str(text)
    )


def shown(value: object) -> str:
    """``repr(value)`` for an error line, cut at 200 characters."""
    text = repr(value)
    return text if len(text) <= 200 else f"{text[:197]}..."


def dotted(path: tuple[str | int, ...] | list[str | int]) -> str:
    """A key path as text: ``train.hidden[1]``, ``stages.train.deps[0]``."""
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")


def one_line(err: Exception) -> str:
    """A pydantic ``ValidationError`` as ``where: what (got value)``; a CSV's row counts from 1."""
    first = err.errors()[0]  # type: ignore[attr-defined]
    loc = list(first["loc"])
    row = f"row {loc.pop(0) + 1}" if loc and isinstance(loc[0], int) else ""
    where = ": ".join(part for part in (row, dotted(loc)) if part) or "value"
    return f"{where}: {first['msg']} (got {first.get('input')!r})"
