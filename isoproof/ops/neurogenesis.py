"""Neurogenesis: add scaffold neurons without changing the function.

Maths (``docs/method.md`` §5). After one left diagonalisation of hidden layer
``l``, append ``n`` neurons with a zero incoming row, zero bias and zero psi entry, and outgoing
columns ``init_scale * N(0, 1)`` in ``W_{l+1}``. Their pre-activation is identically 0, so the norm
``N_l`` and every output are unchanged, whatever the outgoing columns (exact: see
``proofs/neurogenesis.py``). A non-zero outgoing column gives the new rows a non-zero gradient
(``dL/dw_new = g_l (c^T dL/dz_{l+1}) a_{l-1}^T``); ``init_scale=0`` leaves them at a saddle.

Example::

    >>> model = IsotropicMLP([4, 6, 3], dtype=torch.float64)
    >>> x = torch.randn(8, 4, dtype=torch.float64)
    >>> receipt = grow(model, 0, n=3, probe=x)
    >>> model.widths, receipt.max_abs_change < 1e-12
    ([4, 9, 3], True)
"""

from __future__ import annotations

import torch

from .._validate import check_float, check_int
from ..exceptions import WidthError
from ..receipt import Receipt
from ._surgery import Surgery, agreed, embedding

__all__ = ["grow"]


def append_neurons(
    s: Surgery,
    h: int,
    n: int,
    *,
    init_scale: float = 0.01,
    generator: torch.Generator | None = None,
) -> None:
    """Append ``n`` inactive neurons to hidden layer ``h`` of the workspace ``s``."""
    width = s.widths[h + 1]
    s.change_basis(h, embedding(width, width + n))  # zero rows, biases, psi
    out, *taps = s.W[h + 1].shape[:1] + s.W[h + 1].shape[2:]
    (cols,) = agreed(
        lambda: (torch.randn(out, n, *taps, generator=generator, dtype=torch.float64),)
    )
    cols = cols * init_scale
    s.W[h + 1][:, width:] = cols.to(s.W[h + 1].device)  # any column: see proofs/neurogenesis.py
    s.touch(h + 1)


def grow(
    model: object,
    layer: int,
    n: int = 1,
    *,
    init_scale: float = 0.01,
    generator: torch.Generator | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    probe: torch.Tensor | None = None,
) -> Receipt:
    """Add ``n`` scaffold neurons to hidden layer ``layer`` (``0 <= layer <= L-2``), in place.

    The layer is first left-diagonalised (one SVD), so the new neurons sit after the weakest
    existing one. New optimiser moments are zero.
    """
    s = Surgery(model, optimizer)
    h = s.check_hidden(layer)
    n = check_int(n, "n", lo=1, error=WidthError)
    init_scale = check_float(init_scale, "init_scale", lo=0.0)
    R, _, _ = s.left_basis(h)
    s.change_basis(h, R.T)
    append_neurons(s, h, n, init_scale=init_scale, generator=generator)
    return s.commit("grow", h, singular_values=(0.0,) * n, probe=probe)
