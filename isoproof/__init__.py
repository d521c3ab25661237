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
"""

from . import _layout

_layout.install()  # isoproof.proofs / isoproof.exporters in a source checkout (see _layout)

from . import data as data
from . import distributed as distributed
from . import ngc as ngc
from . import testing as testing
from ._version import __version__ as __version__
from .activations import IsotropicActivation as IsotropicActivation
from .activations import export_mode as export_mode
from .collapse import CollapsedMLP as CollapsedMLP
from .collapse import collapse as collapse
from .conv import IsotropicConvNet as IsotropicConvNet
from .diagonal import DiagonalConv as DiagonalConv
from .diagonal import DiagonalLinear as DiagonalLinear
from .distributed import check_replicas as check_replicas
from .distributed import synchronise as synchronise
from .distributed import synchronised as synchronised
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
from .io import load as load
from .io import save as save
from .mlp import IsotropicMLP as IsotropicMLP
from .mlp import count_parameters as count_parameters
from .network import IsotropicNet as IsotropicNet
from .ngc import NGCLinear as NGCLinear
from .ngc import ngc_compress as ngc_compress
from .ops import adapt as adapt
from .ops import add_inputs as add_inputs
from .ops import add_outputs as add_outputs
from .ops import full_diagonalise as full_diagonalise
from .ops import grow as grow
from .ops import left_diagonalise as left_diagonalise
from .ops import prune as prune
from .ops import prune_below as prune_below
from .ops import prune_dead as prune_dead
from .ops import remove_inputs as remove_inputs
from .ops import remove_outputs as remove_outputs
from .ops import rotate as rotate
from .ops import singular_values as singular_values
from .ops import sparsify as sparsify
from .ops._bounds import exact_bounds as exact_bounds
from .radial import get_radial as get_radial
from .receipt import Receipt as Receipt
from .stability import stability as stability
from .train import AdaptSchedule as AdaptSchedule
from .train import History as History
from .train import WidthSchedule as WidthSchedule
from .train import fit as fit

__all__ = [
    "AdaptSchedule",
    "CheckpointError",
    "CollapsedMLP",
    "DiagonalConv",
    "DiagonalLinear",
    "History",
    "IsoproofError",
    "IsotropicActivation",
    "IsotropicConvNet",
    "IsotropicMLP",
    "IsotropicNet",
    "LayerIndexError",
    "MissingGainError",
    "NGCLinear",
    "NonFiniteError",
    "NotCollapsibleError",
    "NotDiagonalisableError",
    "NotEquivariantError",
    "NotIsotropicError",
    "NotOrthogonalError",
    "Receipt",
    "ReplicaMismatchError",
    "StaleWrapperError",
    "UnsupportedOptimizerError",
    "UnsynchronisedError",
    "WidthError",
    "WidthSchedule",
    "__version__",
    "adapt",
    "add_inputs",
    "add_outputs",
    "check_replicas",
    "collapse",
    "count_parameters",
    "data",
    "distributed",
    "exact_bounds",
    "export_mode",
    "fit",
    "full_diagonalise",
    "get_radial",
    "grow",
    "left_diagonalise",
    "load",
    "ngc",
    "ngc_compress",
    "prune",
    "prune_below",
    "prune_dead",
    "remove_inputs",
    "remove_outputs",
    "rotate",
    "save",
    "singular_values",
    "sparsify",
    "stability",
    "synchronise",
    "synchronised",
    "testing",
]
