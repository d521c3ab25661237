"""Run the registered claims and controls; the ``python -m proofs`` command line.

``run()`` evaluates every claim (or the ones named) under a per-claim time limit and returns a
:class:`~proofs.report.Report`. A claim *holds* iff its residual is identically zero (see
:func:`proofs._symbolic.is_zero`). A control is a claim's own check with one thing broken
(:func:`proofs.registry.broken`); it passes iff that same proof path does *not* prove it
(status ``not proved``); a control that is proved (``holds``), times out or crashes fails the
run.

The time limit uses ``SIGALRM`` (Unix, main thread only; elsewhere claims run without one). An
enclosing alarm (e.g. pytest-timeout's) is kept: the earlier deadline wins and the outer alarm
is re-armed afterwards.

Command line::

    python -m proofs [--json PATH] [--junit PATH] [--only ID ...] [--timeout SECONDS] [--list]

Exit status 0 iff every claim is proved and no control is; 1 otherwise; 2 on usage errors.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from types import FrameType

import sympy as sp

from . import registry
from ._symbolic import Residual, entries, is_zero
from .options import DEFAULT_TIMEOUT, add_arguments
from .registry import Claim
from .report import Report, Result, report_path_problem, shorten_residual, write_atomic

__all__ = ["DEFAULT_TIMEOUT", "ClaimTimeout", "evaluate", "main", "run", "time_limit"]


class ClaimTimeout(Exception):
    """Raised inside a claim's check when its time limit expires."""


def _alarm_available() -> bool:
    return hasattr(signal, "SIGALRM") and threading.current_thread() is threading.main_thread()


@contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Raise :class:`ClaimTimeout` in the block after ``seconds`` (``None`` or <= 0: no limit)."""
    if seconds is None or seconds <= 0 or not _alarm_available():
        yield
        return
    start = time.monotonic()
    previous_handler = signal.getsignal(signal.SIGALRM)
    outer_delay, outer_interval = signal.getitimer(signal.ITIMER_REAL)
    outer_first = 0 < outer_delay < seconds
    delivered: list[bool] = []

    def _on_alarm(signum: int, frame: FrameType | None) -> None:
        if outer_first and callable(previous_handler):
            delivered.append(True)
            previous_handler(signum, frame)  # the enclosing deadline came first
        raise ClaimTimeout(f"timeout after {seconds:g}s")

    signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, outer_delay if outer_first else seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous_handler)
        if outer_delay > 0 and not delivered:
            remaining = max(outer_delay - (time.monotonic() - start), 1e-3)
            signal.setitimer(signal.ITIMER_REAL, remaining, outer_interval)


def format_residual(residual: Residual) -> str:
    """``"0"`` for a zero residual, else its non-zero entries (numbers to 8 digits)."""
    values = entries(residual)
    nonzero = [e for e in values if e != 0]
    if not nonzero:
        return "0"
    shown = [str(sp.N(e, 8)) if e.is_Number else str(e) for e in nonzero]
    prefix = f"{len(nonzero)}/{len(values)} non-zero: " if len(values) > 1 else ""
    return shorten_residual(prefix + "; ".join(shown))


def evaluate(claim: Claim, timeout: float | None = DEFAULT_TIMEOUT) -> Result:
    """Run one claim's check under the time limit and classify the residual."""
    start = time.perf_counter()
    try:
        with time_limit(timeout):
            residual = claim.check()
            holds = is_zero(residual)
            text = format_residual(residual)
        if claim.kind == "claim":
            status = "proved" if holds else "not proved"
        else:
            status = "holds" if holds else "not proved"
    except ClaimTimeout as exc:
        holds, status, text = False, "timeout", str(exc)
    except Exception as exc:  # a crashing check is reported, never silently passed
        holds, status, text = False, "error", shorten_residual(f"{type(exc).__name__}: {exc}")
    return Result(
        id=claim.id,
        statement=claim.statement,
        section=claim.section,
        kind=claim.kind,
        holds=holds,
        residual=text,
        seconds=time.perf_counter() - start,
        status=status,
    )


def _select(ids: Sequence[str] | None) -> tuple[Claim, ...]:
    if ids is None:
        return registry.claims()
    by_id = {c.id: c for c in registry.claims()}
    unknown = [i for i in ids if i not in by_id]
    if unknown:
        raise KeyError(f"unknown claim id(s): {', '.join(unknown)}")
    return tuple(by_id[i] for i in dict.fromkeys(ids))


def run(
    ids: Sequence[str] | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
    on_claim: Callable[[int, int, str], object] | None = None,
) -> Report:
    """Evaluate the claims named by ``ids`` (all when ``None``), in registry order.

    ``on_claim(index, total, claim_id)`` is called before each claim runs (progress display).
    """
    selected = _select(ids)
    start, cpu = time.perf_counter(), time.process_time()
    results: list[Result] = []
    for index, claim in enumerate(selected):
        if on_claim is not None:
            on_claim(index, len(selected), claim.id)
        results.append(evaluate(claim, timeout))
    return Report(
        results=tuple(results),
        seconds=time.perf_counter() - start,
        cpu_seconds=time.process_time() - cpu,
    )


def _parser(prog: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog or "python -m proofs",
        description="Check the SymPy proofs of the isotropic method's invariances "
        "(exit 0 iff every claim is proved and no negative control is).",
    )
    return add_arguments(parser)


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """Command-line entry point; returns the exit status (see the module docstring).

    A report path that is a directory, or whose folder cannot be created or written, is one
    line on stderr and status 2 (before any proof runs); output into a pipe whose reader went
    away (``| head``) stops quietly with 141.
    """
    args = _parser(prog).parse_args(argv)
    for flag, path in (("--json", args.json), ("--junit", args.junit)):
        problem = None if path is None else report_path_problem(path, flag)
        if problem is not None:
            print(f"proofs: error: {problem}", file=sys.stderr)
            return 2
    try:
        status = run_from_args(args)
        sys.stdout.flush()
    except BrokenPipeError:  # as isoproof.app.cli._discard_stdout (proofs/ cannot import it)
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        except (AttributeError, OSError, ValueError):  # stdout without a file descriptor
            pass
        return 141
    return status


def run_from_args(
    args: argparse.Namespace, on_claim: Callable[[int, int, str], object] | None = None
) -> int:
    """Run the claims selected by parsed :func:`add_arguments` options; returns the exit status.

    ``on_claim`` is passed to :func:`run` (progress display).
    """
    if args.list:
        for claim in registry.claims():
            print(f"{claim.id:<36} {claim.kind:<8} {claim.section:<26} {claim.statement}")
        return 0
    try:
        report = run(args.only, args.timeout, on_claim)
    except KeyError as exc:
        print(f"proofs: error: {exc.args[0]}", file=sys.stderr)
        return 2
    print(report.table())
    if args.json:
        write_atomic(args.json, report.to_json())
        print(f"wrote {args.json}")
    if args.junit:
        write_atomic(args.junit, report.to_junit())
        print(f"wrote {args.junit}")
    return 0 if report.ok else 1
