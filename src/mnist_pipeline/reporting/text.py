"""Text for the report and ``summary``. User-supplied strings are made safe: ``plain`` is one
line of printable characters; ``escape_md`` also escapes HTML and markdown punctuation, so
``data.mirror: "x\\n## INJECTED <img onerror=...>"`` is literal text in a report."""

from __future__ import annotations

import html
import json
import re
from typing import TYPE_CHECKING, Any

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


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub-markdown table of ``frame`` and its index: floats with 4 decimals, every other
    cell and heading escaped."""
    cells = frame.reset_index().map(
        lambda value: f"{value:.4f}" if isinstance(value, float) else escape_md(value)
    )
    return cells.rename(columns=escape_md).to_markdown(index=False, disable_numparse=True)


def as_written(value: Any) -> str:
    """A params value the way params.yaml spells it: ``[128]``, ``null``, ``true``, ``0.01``."""
    return value if isinstance(value, str) else json.dumps(value)
