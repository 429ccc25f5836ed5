"""User-supplied strings (params, manifest, class names, file names) made safe to print.

``plain`` is one line of printable characters; ``escape_md`` also escapes HTML and markdown
punctuation, so ``data.mirror: "x\\n## INJECTED <img onerror=...>"`` lands in a report as
literal text, not a heading and an HTML element.
"""

from __future__ import annotations

import html
import re
import unicodedata
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

# Backslashed: code spans, emphasis, table cells, headings. Links need "](", so that pair
# is broken; brackets alone stay readable ("[128]").
_MARKDOWN = re.compile(r"([\\`*|#])")


def plain(value: object) -> str:
    text = " ".join(str(value).split())  # newlines and tabs -> one space
    return "".join(c if c.isprintable() else "\N{REPLACEMENT CHARACTER}" for c in text)


def escape_md(value: object) -> str:
    escaped = _MARKDOWN.sub(r"\\\1", plain(value)).replace("](", "]\\(")
    return html.escape(escaped, quote=False)


def markdown_table(frame: pd.DataFrame, index: bool = True) -> str:
    """A GitHub-markdown table: floats with 4 decimals, every other cell and heading escaped."""
    frame = frame.reset_index() if index else frame
    cells = frame.map(
        lambda value: f"{value:.4f}" if isinstance(value, float) else escape_md(value)
    )
    return cells.rename(columns=escape_md).to_markdown(index=False, disable_numparse=True)


def printable(text: object) -> str:
    """``text`` for a terminal line (``predict``, ``serve``): control and format characters
    (ANSI escapes, newlines, bidi overrides) as ``\\x1b``-style escapes, the rest as is."""
    return "".join(
        ch.encode("unicode_escape").decode("ascii")
        if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp")
        else ch
        for ch in str(text)
    )
