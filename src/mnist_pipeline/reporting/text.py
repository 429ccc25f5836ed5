"""User-supplied strings (params, manifest, metrics, class names) made safe to print.

``plain``: one line of printable characters (no terminal escape sequences, no newlines
that would start a markdown heading). ``escape_md``: that, with HTML and markdown
punctuation escaped, so ``data.mirror: "x\\n## INJECTED <img onerror=...>"`` lands in a
report as the literal text it is, not a heading and an HTML element.
"""

import html
import re

# Backslashed: code spans, emphasis, table cells, headings. Links need "](", so that pair
# is broken; brackets alone stay readable ("[128]"). HTML goes through entities.
_MARKDOWN = re.compile(r"([\\`*|#])")


def plain(value: object) -> str:
    text = " ".join(str(value).split())  # newlines and tabs -> one space
    return "".join(c if c.isprintable() else "\N{REPLACEMENT CHARACTER}" for c in text)


def escape_md(value: object) -> str:
    escaped = _MARKDOWN.sub(r"\\\1", plain(value)).replace("](", "]\\(")
    return html.escape(escaped, quote=False)
