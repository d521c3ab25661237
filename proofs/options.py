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

__all__ = ["DEFAULT_TIMEOUT", "add_arguments"]

#: Seconds allowed per claim by default.
DEFAULT_TIMEOUT = 60.0


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
        type=float,
        default=DEFAULT_TIMEOUT,
        help=f"time limit per claim, 0 for none (default {DEFAULT_TIMEOUT:g})",
    )
    parser.add_argument("--list", action="store_true", help="list the claim ids and exit")
    return parser
