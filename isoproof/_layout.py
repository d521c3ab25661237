"""Where ``isoproof.proofs`` and ``isoproof.exporters`` come from.

The repository keeps the proofs and the exporters in top-level folders (``proofs/``,
``exporters/``) beside ``isoproof/``, but they are installed *inside* the package, as
``isoproof.proofs`` and ``isoproof.exporters`` (``package-dir`` in ``pyproject.toml``), so the
wheel adds no generic top-level names such as ``exporters`` to ``site-packages``.

In a source checkout (no wheel built), :func:`install` maps exactly those two names to the sibling
folders, so ``import isoproof.exporters`` works from the checkout as it does when installed, and
always means the checkout's own folder (not another editable copy). ``python -m proofs`` keeps
working from a checkout: the proofs only use relative imports.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

__all__ = ["SUBPACKAGES", "install"]

#: Subpackages whose source lives in a top-level folder of the repository.
SUBPACKAGES: tuple[str, ...] = ("proofs", "exporters")

_PACKAGE = Path(__file__).resolve().parent
_ROOT = _PACKAGE.parent


def _checkout_folder(name: str) -> Path | None:
    """``<repo>/<name>`` if this package sits in an isoproof checkout and the folder exists."""
    if (_PACKAGE / name).exists():  # installed (or built) inside the package: nothing to map
        return None
    folder = _ROOT / name
    pyproject = _ROOT / "pyproject.toml"
    if not (folder / "__init__.py").is_file() or not pyproject.is_file():
        return None
    if 'name = "isoproof"' not in pyproject.read_text(encoding="utf-8", errors="replace"):
        return None
    return folder


class _CheckoutFinder(importlib.abc.MetaPathFinder):
    """Finds ``isoproof.<name>`` for ``name`` in :data:`SUBPACKAGES` in the checkout's folder."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        prefix, _, name = fullname.partition(".")
        if prefix != "isoproof" or name not in SUBPACKAGES:
            return None
        folder = _checkout_folder(name)
        if folder is None:
            return None
        return importlib.util.spec_from_file_location(
            fullname, folder / "__init__.py", submodule_search_locations=[str(folder)]
        )


def install() -> None:
    """Put the checkout finder first on ``sys.meta_path`` (idempotent; a no-op when installed)."""
    if any(_checkout_folder(n) for n in SUBPACKAGES) and not any(
        isinstance(f, _CheckoutFinder) for f in sys.meta_path
    ):
        sys.meta_path.insert(0, _CheckoutFinder())
