"""Helpers shared by the subcommands: argument parsing and model loading with clear errors."""

from __future__ import annotations

import argparse
import os
import stat
from pathlib import Path

__all__ = [
    "add_force",
    "check_output",
    "existing_file",
    "load_model",
    "pair",
    "parse_conv_spec",
    "parse_widths",
]


def existing_file(value: str) -> Path:
    """argparse type: a readable file (one-line error naming why not: not found, a directory,
    permission denied)."""
    path = Path(value)
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        raise argparse.ArgumentTypeError(
            f"expected an existing file, got {value!r} (not found)"
        ) from None
    except PermissionError:  # a folder on the way may not be entered
        raise argparse.ArgumentTypeError(
            f"expected a readable file, got {value!r} (permission denied)"
        ) from None
    if stat.S_ISDIR(mode):
        raise argparse.ArgumentTypeError(f"expected a file, got a directory {value!r}")
    if not os.access(path, os.R_OK):
        raise argparse.ArgumentTypeError(
            f"expected a readable file, got {value!r} (permission denied)"
        )
    return path


def pair(first: type, second: type, sep: str, example: str, flag: str):
    """argparse type for ``"A<sep>B"``, e.g. ``pair(int, float, ",", "5,0.95", "--adapt")``."""

    def parse(value: str) -> tuple[object, object]:
        try:
            a, b = value.split(sep)
            return first(a), second(b)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {flag} like {example}, got {value!r}"
            ) from None

    return parse


def parse_widths(value: str) -> list[int]:
    """argparse type: ``"64,128,128,10"`` -> ``[64, 128, 128, 10]``."""
    try:
        widths = [int(v) for v in value.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers like 64,128,10, got {value!r}"
        ) from None
    if len(widths) < 2 or min(widths) < 1:
        raise argparse.ArgumentTypeError(f"expected at least two widths >= 1, got {value!r}")
    return widths


def parse_conv_spec(value: str) -> list[dict[str, int]]:
    """argparse type: ``"conv=16:k=3:padding=1:pool=2,conv=16:k=1,dense=32"`` -> layer specs.

    Layers are separated by commas; each is ``key=int`` pairs joined by ``:``, starting with
    ``conv=C`` (then any of ``k``, ``stride``, ``padding``, ``dilation``, ``pool``) or ``dense=N``
    (the spec of :class:`isoproof.IsotropicConvNet`, which validates the keys and values).
    """
    layers: list[dict[str, int]] = []
    for item in value.split(","):
        spec: dict[str, int] = {}
        for part in item.strip().split(":"):
            key, _, number = part.partition("=")
            try:
                spec[key.strip()] = int(number)
            except ValueError:
                raise argparse.ArgumentTypeError(
                    f"expected layers like conv=16:k=3:padding=1,dense=32, got {part!r} in "
                    f"{value!r}"
                ) from None
        if next(iter(spec)) not in ("conv", "dense"):
            raise argparse.ArgumentTypeError(
                f"expected each layer to start with conv=C or dense=N, got {item!r}"
            )
        layers.append(spec)
    return layers


def load_model(path: Path):
    """:func:`isoproof.load` (a missing or damaged file raises ``CheckpointError``: one line)."""
    from ...io import load

    return load(path)


def add_force(parser: argparse.ArgumentParser) -> None:
    """The ``--force`` flag of every command that writes files (see :func:`check_output`)."""
    parser.add_argument(
        "--force", action="store_true", help="overwrite an existing output file of another kind"
    )


def check_output(
    output: str | Path,
    inputs: list[Path | None],
    suffixes: tuple[str, ...],
    *,
    force: bool = False,
    flag: str = "-o",
    outputs: dict[str, str | Path | None] | None = None,
) -> Path:
    """Check an output file path before any work is done (every command that writes one does).

    Refused: a directory; one of the command's ``inputs``; another of its ``outputs`` (by flag:
    the second write would replace the first); (unless ``force``) an existing file of another
    kind (a suffix not in ``suffixes``); a path whose folder cannot be created or written
    (:func:`isoproof.files.check_folder`). An existing file of the same kind is replaced.

    Raises:
        CliError: one line naming ``flag`` and the path.
    """
    from ...files import check_folder
    from . import CliError

    out = Path(output)
    if os.path.isdir(out):
        raise CliError(f"expected a file path for {flag}, got a directory ({str(out)!r})")
    for other, path in (outputs or {}).items():
        if path is not None and Path(path).resolve() == out.resolve():
            raise CliError(f"expected a {flag} path other than the {other} file, got {str(out)!r}")
    for src in inputs:
        if src is not None and out.exists() and out.resolve() == Path(src).resolve():
            raise CliError(f"expected an output path other than the input, got {str(out)!r}")
    if out.exists() and out.suffix.lower() not in suffixes and not force:
        raise CliError(
            f"expected a new file or a {'/'.join(suffixes)} file at {str(out)!r}, got an existing "
            f"{out.suffix or 'suffix-less'} file (pass --force to overwrite it)"
        )
    check_folder(out.parent, flag)
    return out
