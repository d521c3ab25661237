"""``python -m benchmarks [NAME ...]``: run every ``bench_<name>.py`` (or the named ones)."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    names = sorted(
        m.name.removeprefix("bench_")
        for m in pkgutil.iter_modules([str(Path(__file__).parent)])
        if m.name.startswith("bench_")
    )
    wanted = argv or names
    unknown = sorted(set(wanted) - set(names))
    if unknown:
        print(f"benchmarks: error: unknown {unknown}, expected some of {names}", file=sys.stderr)
        return 2
    status = 0
    for name in wanted:
        print(f"== benchmark {name}", flush=True)
        status |= int(importlib.import_module(f"benchmarks.bench_{name}").main([]) or 0)
    return status


raise SystemExit(main(sys.argv[1:]))
