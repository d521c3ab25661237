"""The ``isoproof`` command line.

Each subcommand lives in its own module ``isoproof/cli/cmd_<name>.py`` exposing
``register(subparsers)``, which adds a parser and sets ``run=callable(args) -> int``. Modules are
discovered automatically, so adding a command never edits this file. Heavy imports happen inside
``run`` so that ``isoproof --version`` stays instant.

Errors: bad arguments, missing files and every :class:`~isoproof.IsoproofError` print one line
(``isoproof <command>: error: ...``) and exit with status 2; unexpected failures print one line and
exit 1 (set ``ISOPROOF_DEBUG=1`` for the traceback). Output into a pipe whose reader went away
(``isoproof ... | head``) stops quietly with status 141, as a process killed by ``SIGPIPE``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from collections.abc import Sequence
from typing import NoReturn

from ..._version import __version__
from ...exceptions import one_line

__all__ = ["CliError", "main"]

_BROKEN_PIPE = 128 + 13  # the status of a process killed by SIGPIPE


class CliError(Exception):
    """A user error detected by a command (printed as one line, exit status 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, not usage + error
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="isoproof",
        description="Grow, shrink, sparsify, prove and export isotropic neural networks.",
    )
    parser.add_argument("--version", action="version", version=f"isoproof {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    package = importlib.import_module(__name__)
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if info.name.startswith("cmd_"):
            importlib.import_module(f"{__name__}.{info.name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``isoproof`` with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    try:
        status = _main(argv)
        sys.stdout.flush()  # a reader that went away shows up here at the latest
    except BrokenPipeError:  # e.g. ``isoproof prove --list | head -1``: stop quietly
        _discard_stdout()
        return _BROKEN_PIPE
    return status


def _discard_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's final flush does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (AttributeError, OSError, ValueError):  # stdout replaced by an object without a fd
        pass


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "run", None) is None:
        parser.print_help()
        return 2
    prog = f"isoproof {args.command}"
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        raise
    except (CliError, ValueError, FileNotFoundError, IsADirectoryError, PermissionError) as e:
        if os.environ.get("ISOPROOF_DEBUG"):
            raise
        print(f"{prog}: error: {one_line(e)}", file=sys.stderr)
        return 2
    except Exception as e:
        if os.environ.get("ISOPROOF_DEBUG"):
            raise
        print(
            f"{prog}: internal error: {type(e).__name__}: {one_line(e)} "
            "(set ISOPROOF_DEBUG=1 for the traceback)",
            file=sys.stderr,
        )
        return 1
