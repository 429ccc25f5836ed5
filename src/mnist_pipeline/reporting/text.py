"""Report text made safe: ``plain`` is one line of printable characters; ``escape_md`` also
escapes HTML and markdown, so ``"x\\n## INJECTED <img onerror=...>"`` stays literal text."""

from __future__ import annotations

import html
import json
import re
from typing import Any

import pandas as pd

# Backslashed: code spans, emphasis, table cells, headings; "](" is broken so no link forms.
_MARKDOWN = re.compile(r"([\\`*|#])")


def plain(value: object) -> str:
    text = " ".join(str(value).split())  # newlines and tabs -> one space
    return "".join(c if c.isprintable() else "\N{REPLACEMENT CHARACTER}" for c in text)


def escape_md(value: object) -> str:
    return html.escape(_MARKDOWN.sub(r"\\\1", plain(value)).replace("](", "]\\("), quote=False)


def markdown_table(frame: pd.DataFrame) -> str:
    """``frame`` and its index as a table: floats with 4 decimals, all else escaped."""
    cells = frame.reset_index().map(
        lambda value: f"{value:.4f}" if isinstance(value, float) else escape_md(value)
    )
    return cells.rename(columns=escape_md).to_markdown(index=False, disable_numparse=True)


def as_written(value: Any) -> str:
    """A params value as params.yaml spells it: ``[128]``, ``null``, ``true``, ``0.01``."""
    return value if isinstance(value, str) else json.dumps(value)
