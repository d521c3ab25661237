"""Plain-text and Markdown tables for the CLI, the demo, experiments and benchmarks.

Example::

    >>> print(format_table(["op", "change"], [["sparsify", 1e-16]]))
    op        change
    --------  ------
    sparsify  1e-16
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["format_cell", "format_table", "markdown_table"]


def format_cell(value: object) -> str:
    """Numbers compactly (``%.4g``), everything else with ``str``."""
    if isinstance(value, bool) or value is None:
        return "-" if value is None else str(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(format_cell(v) for v in value) + "]"
    return str(value)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A fixed-width table with a dashed rule under the headers."""
    cells = [[format_cell(v) for v in row] for row in rows]
    widths = [
        max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)
    ]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-flavoured Markdown table."""
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(format_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(out)


def records_table(columns: Sequence[tuple[str, str]], records: Sequence[Mapping[str, Any]]) -> str:
    """:func:`markdown_table` of dict records: ``columns`` are ``(header, key)`` pairs.

    Example::

        >>> print(records_table([("a", "x"), ("b", "y")], [{"x": 1, "y": 2.5}]))
        | a | b |
        |---|---|
        | 1 | 2.5 |
    """
    return markdown_table([h for h, _ in columns], [[r[k] for _, k in columns] for r in records])
