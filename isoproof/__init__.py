"""isoproof: grow, shrink and sparsify isotropic networks with proven function preservation.

An isotropic activation ``f(x) = g(|x|) x`` commutes with every orthogonal change of basis, so a
layer can be rotated into its singular basis (:func:`left_diagonalise`), alternate layers made
diagonal (:func:`sparsify`), weak neurons removed (:func:`prune`, exact at sigma = 0 thanks to the
intrinsic length ``o`` and the psi correction) and inactive neurons added (:func:`grow`), all with
the function unchanged. Every operation is in place, transactional, carries the optimiser state
along, and returns a :class:`Receipt`. Proofs: ``python -m proofs``.

Example::

    >>> import torch, isoproof
    >>> model = isoproof.IsotropicMLP([8, 32, 32, 32, 4], dtype=torch.float64)
    >>> x = torch.randn(16, 8, dtype=torch.float64)
    >>> y = model(x)
    >>> receipt = isoproof.sparsify(model)
    >>> isoproof.testing.assert_function_preserved(lambda x: y, model, x) < 1e-12
    True

The package is lazy (PEP 562): ``import isoproof`` loads only the version and the exceptions, and
each public name imports its module (and torch) on first use, so ``isoproof --version`` starts
without torch or SymPy. ``from isoproof import X`` and ``isoproof.X`` work as before.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

from . import _layout

_layout.install()  # isoproof.proofs / isoproof.exporters in a source checkout (see _layout)

from ._version import __version__ as __version__
from .exceptions import CheckpointError as CheckpointError
from .exceptions import IsoproofError as IsoproofError
from .exceptions import LayerIndexError as LayerIndexError
from .exceptions import MissingGainError as MissingGainError
from .exceptions import NonFiniteError as NonFiniteError
from .exceptions import NotCollapsibleError as NotCollapsibleError
from .exceptions import NotDiagonalisableError as NotDiagonalisableError
from .exceptions import NotEquivariantError as NotEquivariantError
from .exceptions import NotIsotropicError as NotIsotropicError
from .exceptions import NotOrthogonalError as NotOrthogonalError
from .exceptions import ReplicaMismatchError as ReplicaMismatchError
from .exceptions import StaleWrapperError as StaleWrapperError
from .exceptions import UnsupportedOptimizerError as UnsupportedOptimizerError
from .exceptions import UnsynchronisedError as UnsynchronisedError
from .exceptions import WidthError as WidthError

#: Module (relative to the package) -> the public names it provides, imported on first use.
_LAZY: dict[str, tuple[str, ...]] = {
    "activations": ("IsotropicActivation", "export_mode"),
    "collapse": ("CollapsedMLP", "collapse"),
    "conv": ("IsotropicConvNet",),
    "diagonal": ("DiagonalConv", "DiagonalLinear"),
    "distributed": ("check_replicas", "synchronise", "synchronised"),
    "io": ("load", "save"),
    "mlp": ("IsotropicMLP", "count_parameters"),
    "network": ("IsotropicNet",),
    "ngc": ("NGCLinear", "ngc_compress"),
    "ops": (
        "adapt",
        "add_inputs",
        "add_outputs",
        "full_diagonalise",
        "grow",
        "left_diagonalise",
        "prune",
        "prune_below",
        "prune_dead",
        "remove_inputs",
        "remove_outputs",
        "rotate",
        "singular_values",
        "sparsify",
    ),
    "ops._bounds": ("exact_bounds",),
    "radial": ("get_radial",),
    "receipt": ("Receipt",),
    "stability": ("stability",),
    "train": ("AdaptSchedule", "History", "WidthSchedule", "fit"),
}
_SOURCE = {name: module for module, names in _LAZY.items() for name in names}
#: Public submodules (``isoproof.data``, ``isoproof.ops`` ...), imported on first use as well:
#: the ones the package held as attributes before it became lazy, and ``checkpoint``.
_SUBMODULES = frozenset(
    {
        "activations",
        "checkpoint",
        "conv",
        "data",
        "diagonal",
        "distributed",
        "files",
        "io",
        "mlp",
        "network",
        "ngc",
        "ops",
        "optim",
        "psi",
        "radial",
        "receipt",
        "standard",
        "table",
        "testing",
        "train",
    }
)
#: Functions named like the module that defines them: the function is the package attribute.
_SHADOWED = frozenset(n for n in _SOURCE if n == _SOURCE[n])


def __getattr__(name: str) -> Any:
    """Import the module behind a public name on first use (PEP 562)."""
    if name in _SOURCE:
        value = getattr(importlib.import_module(f".{_SOURCE[name]}", __name__), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    """Keeps ``isoproof.collapse`` / ``isoproof.stability`` the functions (as they were before
    the package became lazy) when their submodules are imported: the import system would set the
    package attribute to the submodule."""

    def __setattr__(self, name: str, value: object) -> None:
        if name in _SHADOWED and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

#: The public names: the version, the exceptions above, every lazy name and four submodules
#: (computed from the tables above, so a name is listed in one place only).
_ERRORS = [
    name for name, v in dict(globals()).items() if isinstance(v, type) and issubclass(v, Exception)
]
__all__ = sorted(
    {
        "__version__",
        *_ERRORS,
        *_SOURCE,
        "data",
        "distributed",
        "ngc",
        "testing",
    }
)
