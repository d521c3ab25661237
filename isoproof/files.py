"""Atomic file writes: write to a temporary name in the same folder, then rename.

A crash or an error mid-write never leaves a truncated file under the final name, and an existing
file is only replaced once the new one is complete. The temporary name is
``.<name>.<pid>.isoproof-tmp``: a process killed mid-write (``kill -9``) leaves it behind, and
the next write of the same path removes every such file whose process is gone. The final file
gets the mode a plain ``open()`` would give it (``0o666`` minus the umask, or the mode of the
file it replaces). :func:`check_folder` tells before any long work whether a folder can hold the
files (the command line checks every output that way).

Example::

    >>> with atomic_path(tmp_path / "out.txt") as tmp:
    ...     _ = tmp.write_text("done")
    >>> (tmp_path / "out.txt").read_text()
    'done'
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .exceptions import IsoproofError

__all__ = ["atomic_path", "atomic_write_text", "check_folder", "remove_stale_temporaries"]

_SUFFIX = ".isoproof-tmp"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_stale_temporaries(path: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporaries of earlier writes of ``path`` whose process no longer runs."""
    path = Path(path)
    removed = []
    for tmp in path.parent.glob(f".{path.name}.*{_SUFFIX}"):
        pid = tmp.name[len(path.name) + 2 : -len(_SUFFIX)]
        if pid.isdigit() and (int(pid) == os.getpid() or not _alive(int(pid))):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def _final_mode(path: Path) -> int:
    try:
        return path.stat().st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}{_SUFFIX}")
    try:
        yield tmp
        os.chmod(tmp, _final_mode(path))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def check_folder(folder: str | os.PathLike[str], what: str, *, writable: bool = True) -> Path:
    """Check that ``folder`` is, or can be created as, a folder (writable unless told otherwise).

    The folder itself, if it exists, must be a folder; otherwise its nearest existing ancestor
    must be one (so that it can be created). With ``writable``, that folder must let this
    process create files (not read-only, not locked by permissions). Nothing is created.

    Args:
        folder: the folder that will hold the files.
        what: how the message names it (e.g. ``"--out"``, ``"$ISOPROOF_CACHE"``).
        writable: also require write permission.

    Raises:
        IsoproofError: ``"expected a folder for X, got the file P"`` or ``"expected a (writable)
            folder for X, got P (a file | permission denied | read-only file system)"``, where
            ``P`` is the nearest existing folder or file on the way.

    Example::

        >>> check_folder(tmp_path / "new" / "sub", "--out") == tmp_path / "new" / "sub"
        True
    """
    folder = Path(folder)
    if os.path.exists(folder) and not os.path.isdir(folder):  # os.path: never raises
        raise IsoproofError(f"expected a folder for {what}, got the file {str(folder)!r}")
    existing = next(p for p in (folder, *folder.parents) if os.path.exists(p) or p == p.parent)
    kind = "a writable folder" if writable else "a folder"
    if not os.path.isdir(existing):
        reason = "a file"
    elif not writable or os.access(existing, os.W_OK | os.X_OK):
        return folder
    else:
        read_only = bool(os.statvfs(existing).f_flag & os.ST_RDONLY)
        reason = "read-only file system" if read_only else "permission denied"
    raise IsoproofError(f"expected {kind} for {what}, got {str(existing)!r} ({reason})")
