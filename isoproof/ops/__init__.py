"""Structural operations: every verb that changes a model's basis or size.

Every verb works on :class:`~isoproof.IsotropicMLP` and :class:`~isoproof.IsotropicConvNet`
alike: the channels of a conv layer are a space like the neurons of a dense layer.

Each verb is a validated entry point that opens one transactional workspace
(:mod:`isoproof.ops._surgery`, internal), applies changes of basis of one space at a time through
the single engine ``Surgery.change_basis``, and commits model and optimiser state together,
returning a :class:`~isoproof.receipt.Receipt`. A refused call changes nothing.

Verb (``isoproof.<verb>``) -> module (``isoproof.ops.<module>``) -> proof ids
(``python -m proofs --only <id>``):

* ``rotate`` -> ``reparameterisation`` -> ``equivariance.*``, ``reparameterisation.*``
* ``singular_values``, ``left_diagonalise`` -> ``diagonalisation`` -> ``diagonalisation.left``
* ``full_diagonalise``, ``sparsify`` -> ``diagonalisation`` -> ``diagonalisation.full``,
  ``sparsification.*``
* ``grow`` -> ``neurogenesis`` -> ``neurogenesis.*``, ``nested_class.growth``
* ``prune``, ``prune_below``, ``prune_dead`` -> ``neurodegeneration`` -> ``neurodegeneration.*``,
  ``nested_class.degeneration``
* ``adapt`` (the scaffold buffer) -> ``scaffold`` -> ``neurogenesis.*``, ``neurodegeneration.*``
* ``add_inputs``, ``remove_inputs``, ``add_outputs``, ``remove_outputs`` -> ``tasks`` ->
  ``neurogenesis.*`` (zero rows and columns)

Internal modules (leading underscore): ``_surgery`` (the workspace and the change-of-basis engine)
and ``_bounds`` (the receipts' error bounds). Maths: ``docs/method.md`` §1-§6.

A new operation goes in its own module here: validate the arguments (:mod:`isoproof._validate`),
open a ``Surgery``, express the change as ``change_basis`` calls, ``commit``; add its claim to
``proofs/`` and a line to the table above.
"""

from .diagonalisation import full_diagonalise as full_diagonalise
from .diagonalisation import left_diagonalise as left_diagonalise
from .diagonalisation import singular_values as singular_values
from .diagonalisation import sparsify as sparsify
from .neurodegeneration import prune as prune
from .neurodegeneration import prune_below as prune_below
from .neurodegeneration import prune_dead as prune_dead
from .neurogenesis import grow as grow
from .reparameterisation import rotate as rotate
from .scaffold import adapt as adapt
from .tasks import add_inputs as add_inputs
from .tasks import add_outputs as add_outputs
from .tasks import remove_inputs as remove_inputs
from .tasks import remove_outputs as remove_outputs

__all__ = [
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
]
