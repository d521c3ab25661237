"""The adaptive scaffold buffer (``docs/method.md`` §5, paper v2).

After each epoch, for every hidden layer from the last to the first, count the neurons whose
singular value is ``<= threshold`` (all rows of ``W_l``, including structurally zero ones when the
layer is wider than its input) and grow or prune so that exactly ``buffer`` such neurons remain:

* too few: append scaffold neurons (exact, :mod:`isoproof.ops.neurogenesis`);
* too many: remove the weakest (:mod:`isoproof.ops.neurodegeneration`; bounded by the receipt).

Pruning layer ``h`` can make layer ``h + 1`` rank-deficient (new ``sigma = 0`` rows), so the sweep
is repeated until nothing changes (at most :data:`MAX_SWEEPS` sweeps; usually two).

A layer always keeps at least one neuron, so with ``buffer=0`` a layer whose neurons are all weak
keeps its strongest one. The paper's run uses ``buffer=5, threshold=0.95`` (just below the
orthogonal-initialisation value 1).

Example::

    >>> model = IsotropicMLP([4, 6, 6, 3], dtype=torch.float64)
    >>> receipt = adapt(model, buffer=2, threshold=0.5)
    >>> model.widths  # layer 0: 6 rows on 4 inputs = 2 weak already; layer 1: all sigma = 1
    [4, 6, 8, 3]
"""

from __future__ import annotations

import torch

from .._validate import check_float, check_int
from ..receipt import Receipt
from ._surgery import Surgery
from .neurodegeneration import remove_weakest
from .neurogenesis import append_neurons

__all__ = ["MAX_SWEEPS", "adapt"]

MAX_SWEEPS = 4
"""Removing neurons of layer ``h`` shrinks the input of layer ``h + 1``, which can give it new
structural ``sigma = 0`` rows; the last-first sweep is repeated until no layer changes."""


def adapt(
    model: object,
    *,
    buffer: int = 5,
    threshold: float = 0.95,
    init_scale: float = 0.01,
    generator: torch.Generator | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    probe: torch.Tensor | None = None,
) -> Receipt:
    """Grow or prune every hidden layer (last first) to ``buffer`` neurons with sigma <= threshold.

    One transaction: the receipt's ``singular_values`` are the removed ones and its bound the sum
    of the pruning bounds (growth is exact).
    """
    buffer = check_int(buffer, "buffer", lo=0)
    threshold = check_float(threshold, "threshold", lo=0.0)
    init_scale = check_float(init_scale, "init_scale", lo=0.0)
    s = Surgery(model, optimizer)
    removed: list[float] = []
    bound = 0.0
    for _ in range(MAX_SWEEPS):
        changed = False
        for h in reversed(range(s.num_layers - 1)):
            # decide on the cached singular values; a basis only where the layer changes
            count = int((s.singular_values(h) <= threshold).sum())
            width = s.widths[h + 1]
            if count > buffer and width > 1:
                n = min(count - buffer, width - 1)
                values, b = remove_weakest(s, h, n, probe=probe)
                removed.extend(values.tolist())
                bound += b
                changed = True
            elif count < buffer:
                s.change_basis(h, s.left_basis(h)[0].T)  # left diagonalisation first (paper)
                append_neurons(s, h, buffer - count, init_scale=init_scale, generator=generator)
                changed = True
        if not changed:
            break
    return s.commit("adapt", None, singular_values=tuple(removed), bound=bound, probe=probe)
