"""Progress of long work: a bar on stderr when stderr is a terminal, silence otherwise.

One home for progress display: :func:`isoproof.train.fit` draws its epochs with it, and the
command line its long commands (``isoproof prove``, ``export``, ``ngc``). The bar is drawn only
when the stream (default ``sys.stderr``) is a terminal, so logs, pipes and CI output get no
control codes; with ``notes=True``, :meth:`Progress.note` lines are printed either way (above
the bar, or as plain lines). Standard output is left alone unless it is the same kind of
terminal, so a report piped to a file never receives the bar.

Example::

    >>> import io
    >>> with Progress("export", total=2, stream=io.StringIO()) as bar:  # not a terminal
    ...     bar.begin("write model.onnx")
    ...     bar.begin("verify model.onnx")
    >>> bar.drawn
    False
"""

from __future__ import annotations

import sys
from types import TracebackType
from typing import Any, TextIO

__all__ = ["Progress", "is_terminal"]


def is_terminal(stream: Any) -> bool:
    """Whether ``stream`` is a terminal (``False`` for anything without a working ``isatty``)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, OSError, ValueError):  # closed, replaced, or no such method
        return False


class Progress:
    """A rich progress bar (label, bar, steps done, elapsed time, info) on a terminal.

    Args:
        label: the first column (e.g. ``"prove"``, ``"epoch 1/5"``).
        total: the number of steps (``None``: unknown until :meth:`update` gives it).
        enabled: ``False`` shows nothing at all (not even notes).
        notes: print :meth:`note` lines on the stream when no bar is drawn.
        transient: remove the bar when closed (else it stays as the last line).
        stream: where to draw (default ``sys.stderr`` at construction).
    """

    def __init__(
        self,
        label: str,
        total: int | None = None,
        *,
        enabled: bool = True,
        notes: bool = False,
        transient: bool = False,
        stream: TextIO | None = None,
    ) -> None:
        self.stream = sys.stderr if stream is None else stream
        self.enabled = enabled
        self.notes = notes
        self.bar: Any = None
        self._begun = 0
        if enabled and is_terminal(self.stream):
            self._start(label, total, transient)

    @property
    def drawn(self) -> bool:
        """Whether a bar is drawn (the stream is a terminal and progress is enabled)."""
        return self.bar is not None

    def _start(self, label: str, total: int | None, transient: bool) -> None:
        try:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeElapsedColumn,
            )
            from rich.progress import Progress as RichProgress
        except ImportError:  # rich is a dependency; a broken install only loses the bar
            return
        self.bar = RichProgress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[info]}"),
            console=Console(file=self.stream, force_terminal=True),
            transient=transient,
            redirect_stdout=is_terminal(sys.stdout),  # prints go above the bar on one screen
            redirect_stderr=False,
        )
        self.task = self.bar.add_task(label, total=total, info="")
        self.bar.start()

    def update(
        self,
        info: str | None = None,
        *,
        advance: int = 0,
        completed: int | None = None,
        total: int | None = None,
        label: str | None = None,
    ) -> None:
        """Move the bar: ``advance`` steps done (or ``completed`` in all), new ``info`` text,
        ``total`` or ``label``."""
        if self.bar is None:
            return
        fields: dict[str, Any] = {"advance": advance}
        for key, value in (("completed", completed), ("total", total), ("description", label)):
            if value is not None:
                fields[key] = value
        if info is not None:
            fields["info"] = info
        self.bar.update(self.task, **fields)

    def begin(self, info: str) -> None:
        """A new step starts (the previous one is done); ``info`` names it."""
        self.update(info, completed=self._begun)
        self._begun += 1

    def note(self, line: str) -> None:
        """A line of text: above the bar, or (with ``notes``) plainly on the stream."""
        if self.bar is not None:
            self.bar.console.print(line, highlight=False)
        elif self.enabled and self.notes:
            print(line, file=self.stream, flush=True)

    def close(self) -> None:
        """Stop drawing (the steps begun count as done)."""
        if self.bar is not None:
            if self._begun:
                self.update(completed=self._begun)
            self.bar.stop()
            self.bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()
