"""User-supplied strings (params, manifest, metrics, class names) made safe to print.

``plain``: one line of printable characters (no terminal escape sequences, no newlines
that would start a markdown heading). ``escape_md``: that, with HTML and markdown
punctuation escaped, so ``data.mirror: "x\\n## INJECTED <img onerror=...>"`` lands in a
report as the literal text it is, not a heading and an HTML element. ``markdown_table``:
a frame as a table of such text, for the report and ``compare``. ``printable``: a
name the user must recognise (a file, a class) on a terminal line, its control
characters shown as ``\\x1b``-style escapes (``predict``, ``serve``).
"""

from __future__ import annotations

import html
import re
import unicodedata
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

# Backslashed: code spans, emphasis, table cells, headings. Links need "](", so that pair
# is broken; brackets alone stay readable ("[128]"). HTML goes through entities.
_MARKDOWN = re.compile(r"([\\`*|#])")


def plain(value: object) -> str:
    text = " ".join(str(value).split())  # newlines and tabs -> one space
    return "".join(c if c.isprintable() else "\N{REPLACEMENT CHARACTER}" for c in text)


def escape_md(value: object) -> str:
    escaped = _MARKDOWN.sub(r"\\\1", plain(value)).replace("](", "]\\(")
    return html.escape(escaped, quote=False)


def markdown_table(frame: pd.DataFrame, index: bool = True) -> str:
    """A GitHub-markdown table (pandas + tabulate): floats (scores, losses) with 4 decimals,
    every other cell and heading as text, escaped (they hold class names, params, paths)."""
    frame = frame.reset_index() if index else frame
    cells = frame.map(
        lambda value: f"{value:.4f}" if isinstance(value, float) else escape_md(value)
    )
    return cells.rename(columns=escape_md).to_markdown(index=False, disable_numparse=True)


def printable(text: object) -> str:
    """``text`` safe for a terminal line: control and format characters (ANSI/OSC escapes,
    newlines, bidi overrides) as ``\\x1b``-style escapes, everything else as is."""
    return "".join(
        ch.encode("unicode_escape").decode("ascii")
        if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp")
        else ch
        for ch in str(text)
    )
