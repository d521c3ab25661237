"""What every experiment shares: its result record, the writer, data selection and threading.

An experiment module exposes ``NAME``, ``TITLE`` and ``run(*, quick=False, seed=0, out=None,
verbose=True) -> Result``. :func:`write_result` stores ``<out>/<name>.md`` (settings, the table
and the plot) and ``<out>/<name>.json`` (settings, every row, wall time, environment; strict JSON:
an infinite bound is written as the string ``"inf"``) next to the PNGs the experiment drew, all
written atomically.

Runs are small on purpose (laptop scale, two shared cores): :func:`single_thread` runs them with
one intra-op thread, which is faster than two contended ones for these tiny matrices.

Example::

    >>> result = Result("demo", "A demo", "| a |\\n|---|\\n| 1 |", {"rows": [{"a": 1}]})
    >>> sorted(p.name for p in write_result(result, tmp_path))
    ['demo.json', 'demo.md']
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from ..._version import __version__
from ...data import Dataset, load_digits, load_mnist1d
from ...files import atomic_write_text
from ...strict_json import dumps

__all__ = [
    "DEFAULT_OUT",
    "QUICK_MNIST1D_SAMPLES",
    "RECIPE",
    "Recipe",
    "Result",
    "Timer",
    "environment",
    "load_data",
    "single_thread",
    "write_result",
]

DEFAULT_OUT = Path("docs") / "results"
QUICK_MNIST1D_SAMPLES = 400  # --quick: a small locally generated MNIST-1D (about 0.3 s)


@dataclass(frozen=True)
class Recipe:
    """The training recipe every experiment uses: passed to :func:`isoproof.train.fit` and
    rendered into the reports from the same object (one home; never typed as prose).

    Example::

        >>> RECIPE.text()
        'AdamW lr 0.001, weight decay 0.001, batch 48'
    """

    lr: float = 1e-3
    weight_decay: float = 1e-3
    batch_size: int = 48

    def fit_kwargs(self) -> dict[str, Any]:
        """``lr``, ``weight_decay`` and ``batch_size`` for :func:`isoproof.train.fit`."""
        return {"lr": self.lr, "weight_decay": self.weight_decay, "batch_size": self.batch_size}

    def text(self) -> str:
        return f"AdamW lr {self.lr:g}, weight decay {self.weight_decay:g}, batch {self.batch_size}"


RECIPE = Recipe()


@dataclass
class Result:
    """One experiment's outputs: a Markdown body, JSON-ready data and the figures drawn."""

    name: str
    title: str
    markdown: str
    data: dict[str, Any]
    figures: list[Path] = field(default_factory=list)


def environment() -> dict[str, Any]:
    """Versions, cores and threads, and the date (stored with every result)."""
    return {
        "isoproof": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def write_result(result: Result, out: str | os.PathLike[str]) -> list[Path]:
    """Write ``<name>.md`` and ``<name>.json`` under ``out``; returns every file of the result."""
    out = Path(out)
    md = [f"# {result.title}", "", result.markdown.strip(), ""]
    for fig in result.figures:
        md += [f"![{fig.stem}]({fig.name})", ""]
    seconds = result.data.get("seconds")
    env = result.data.get("environment", environment())
    if seconds is not None:
        cpu = result.data.get("cpu_seconds")
        cpu_text = f" ({cpu:.0f} s CPU)" if cpu is not None else ""
        md.append(
            f"_Wall time {seconds:.0f} s{cpu_text} with {env['torch_threads']} torch thread(s) "
            f"on a shared {env['cores']}-core machine; torch {env['torch']}, isoproof "
            f"{env['isoproof']}, {env['date']}._"
        )
        md.append("")
    md_path = atomic_write_text(out / f"{result.name}.md", "\n".join(md))
    text = dumps({"experiment": result.name, "title": result.title, **result.data})
    json_path = atomic_write_text(out / f"{result.name}.json", text + "\n")
    return [md_path, json_path, *result.figures]


def load_data(name: str, *, quick: bool = False) -> Dataset:
    """``"digits"`` or ``"mnist1d"``; ``quick`` uses a few hundred rows of each."""
    if name == "digits":
        data = load_digits()
        return data.subset(300, 150) if quick else data
    if name == "mnist1d":
        return load_mnist1d(num_samples=QUICK_MNIST1D_SAMPLES) if quick else load_mnist1d()
    raise ValueError(f"expected 'digits' or 'mnist1d', got {name!r}")


@contextmanager
def single_thread() -> Iterator[None]:
    """Run the block with one torch thread (restored afterwards)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class Timer:
    """``with Timer() as t: ...``; then ``t.seconds`` (wall) and ``t.cpu_seconds`` (this process's
    CPU time, the fairer figure on a shared machine)."""

    def __enter__(self) -> Timer:
        self.start, self.cpu_start = time.perf_counter(), time.process_time()
        self.seconds = self.cpu_seconds = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start
        self.cpu_seconds = time.process_time() - self.cpu_start

    def stamp(self) -> dict[str, Any]:
        """The payload fields every experiment records: wall and CPU seconds, environment."""
        return {
            "seconds": self.seconds,
            "cpu_seconds": self.cpu_seconds,
            "environment": environment(),
        }
