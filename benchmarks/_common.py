"""Shared benchmark plumbing: machine facts and result recording.

``record(name, markdown, data)`` writes ``benchmarks/results/<name>.json`` (with the machine block)
and replaces the section ``<!-- bench:<name> -->`` ... ``<!-- /bench:<name> -->`` of
``docs/benchmarks.md`` (appending it if absent), atomically, so benchmarks never overwrite each
other's results.
"""

from __future__ import annotations

import json
import os
import platform
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from isoproof.files import atomic_write_text

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
DOC = ROOT / "docs" / "benchmarks.md"

__all__ = ["machine", "record", "replace_section"]


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def machine() -> dict[str, Any]:
    """CPU, core count, Python and library versions, and the UTC date."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": {
            d: _version(d)
            for d in ("isoproof", "torch", "numpy", "onnx", "onnxruntime", "torch-pruning")
        },
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def machine_line(m: dict[str, Any]) -> str:
    v = m["versions"]
    return (
        f"Machine: {m['cpu']}, {m['cores']} cores; Python {m['python']}, torch {v['torch']}, "
        f"onnxruntime {v['onnxruntime']}; {m['date']}. Medians; the machine is shared, so "
        "compare the ratios measured in one run."
    )


def record(name: str, markdown: str, data: dict[str, Any]) -> None:
    """Write the JSON result and refresh this benchmark's section of ``docs/benchmarks.md``."""
    m = machine()
    atomic_write_text(
        RESULTS / f"{name}.json",
        json.dumps({"benchmark": name, "machine": m, **data}, indent=2) + "\n",
    )
    replace_section(DOC, name, f"{markdown.strip()}\n\n_{machine_line(m)}_")
    refresh_readme()


def refresh_readme() -> None:
    """Recompute the README's benchmark table from the stored results."""
    from .summary import render

    replace_section(ROOT / "README.md", "summary", render())


def replace_section(path: Path, name: str, markdown: str) -> None:
    """Replace ``<!-- bench:<name> -->`` ... ``<!-- /bench:<name> -->`` in ``path`` (appending the
    section if absent), atomically."""
    begin, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    block = f"{begin}\n{markdown.strip()}\n{end}"
    text = path.read_text() if path.exists() else "# Benchmarks\n\nRun `make bench`.\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    atomic_write_text(path, text)
