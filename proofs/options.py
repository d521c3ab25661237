"""The options of the proofs' command line, shared by ``python -m proofs`` and ``isoproof prove``.

Kept apart from :mod:`proofs.runner` (which imports SymPy) so that building the ``isoproof``
parser, e.g. for ``isoproof --version``, imports nothing heavy.

Example::

    >>> import argparse
    >>> add_arguments(argparse.ArgumentParser()).parse_args(["--only", "a.b"]).only
    ['a.b']
"""

from __future__ import annotations

import argparse
import math

__all__ = ["DEFAULT_TIMEOUT", "add_arguments", "timeout_seconds"]

#: Seconds allowed per claim by default.
DEFAULT_TIMEOUT = 60.0


def timeout_seconds(value: str) -> float:
    """argparse type of ``--timeout``: a finite number of seconds >= 0 (``nan`` or ``inf``
    would make every claim an error rather than a usage error).

    Raises:
        argparse.ArgumentTypeError: "expected X, got Y".

    Example::

        >>> timeout_seconds("2.5")
        2.5
    """
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds >= 0):
        raise argparse.ArgumentTypeError(
            f"expected a finite number of seconds >= 0 (0: no limit), got {value!r}"
        )
    return seconds


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the runner's options to ``parser`` (shared by ``python -m proofs`` and
    ``isoproof prove``)."""
    parser.add_argument("--json", metavar="PATH", help="write the JSON report to PATH")
    parser.add_argument("--junit", metavar="PATH", help="write JUnit XML to PATH")
    parser.add_argument(
        "--only",
        metavar="ID",
        action="append",
        help="run only this claim id (repeatable; see --list)",
    )
    parser.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=timeout_seconds,
        default=DEFAULT_TIMEOUT,
        help=f"time limit per claim, 0 for none (default {DEFAULT_TIMEOUT:g})",
    )
    parser.add_argument("--list", action="store_true", help="list the claim ids and exit")
    return parser
