"""Diagonalisation and sparsification.

Maths (``docs/method.md`` §3). With ``W_l = R L Q^T`` (SVD, singular values
descending, so the weakest neuron is the last row):

* **left** diagonalisation of hidden layer ``l`` (``0 <= l <= L-2``) rotates layer ``l`` into its
  singular basis: ``W_l <- R^T W_l = L Q^T``, ``b_l <- R^T b_l``, ``psi_l <- R^T psi_l``,
  ``W_{l+1} <- W_{l+1} R``. Row ``i`` of ``W_l`` then has norm ``sigma_i``.
* **full** diagonalisation of an interior map (``1 <= l <= L-2``) also rotates the previous hidden
  layer by ``Q``: ``W_l <- L`` (stored as a :class:`~isoproof.diagonal.DiagonalLinear`),
  ``W_{l-1} <- Q^T W_{l-1}``, ``b_{l-1} <- Q^T b_{l-1}``, ``psi_{l-1} <- Q^T psi_{l-1}``.
* :func:`sparsify` fully diagonalises ``l = 1, 3, 5, ...``: the ``K`` hidden-to-hidden maps of width
  ``n`` then store ``floor(K/2) n^2 + ceil(K/2) n`` weights instead of ``K n^2`` (about half).

All three are exact up to rounding (exact: see ``proofs/diagonalisation.py``). The SVD runs in
float64 whatever the model's dtype.

Example::

    >>> model = IsotropicMLP([8, 16, 16, 16, 4], dtype=torch.float64)
    >>> x = torch.randn(32, 8, dtype=torch.float64)
    >>> y = model(x)
    >>> receipt = sparsify(model)
    >>> model.diagonal_layers, float((model(x) - y).abs().max()) < 1e-12
    ([1], True)
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ..exceptions import NonFiniteError, NotDiagonalisableError
from ..receipt import Receipt
from ._surgery import Surgery, check_layer, check_model, pad_to_rows

__all__ = ["full_diagonalise", "left_diagonalise", "pointwise", "singular_values", "sparsify"]


def singular_values(model: object, layer: int) -> torch.Tensor:
    """Singular values of ``maps[layer].weight`` (float64, descending; a kernel read as the
    matrix ``[C_out, C_in * prod(k)]``), one per neuron or channel of the layer: rows beyond the
    input width count as structural zeros. Reads that map only."""
    m = check_model(model)
    widths = m.widths
    layer = check_layer(layer, widths, hi=len(widths) - 2)
    W = m.maps[layer].weight.detach().to(torch.float64)
    W = W.reshape(W.shape[0], -1)
    if not torch.isfinite(W).all():
        raise NonFiniteError(f"expected finite parameters, got NaN/Inf in layer {layer} weight")
    return pad_to_rows(torch.linalg.svdvals(W), W.shape[0])


def _left(s: Surgery, layer: int) -> torch.Tensor:
    R, S, _ = s.left_basis(layer)
    s.change_basis(layer, R.T)  # exact: see proofs/diagonalisation.py (left)
    return S


def pointwise(s: Surgery, layer: int) -> bool:
    """True when ``maps[layer]`` is a matrix on channels: a dense map or a 1x1 convolution (one
    rotation of the input channels can then diagonalise it)."""
    return math.prod(s.W[layer].shape[2:]) == 1


def _full(s: Surgery, layer: int) -> torch.Tensor:
    if not pointwise(s, layer):
        shape = list(s.W[layer].shape)
        raise NotDiagonalisableError(
            f"expected a dense map or a 1x1 convolution at maps[{layer}], got shape {shape}: "
            "a kernel with several spatial taps (or a dense map reading several positions) "
            "would need one rotation of its input channels to diagonalise every tap at once"
        )
    R, S, Vh = s.svd(layer)
    # W_l becomes R^T W_l Q = diag(S): written directly (two n^3 products less); every other
    # tensor, and W_l's optimiser moments, go through the rotations
    s.change_basis(layer - 1, Vh, unset=layer)  # Q^T: rotates the previous hidden layer
    s.change_basis(layer, R.T, unset=layer)  # exact: see proofs/diagonalisation.py (full)
    s.set_diagonal(layer, S)
    return S


def _single(
    op: str,
    step: Callable[[Surgery, int], torch.Tensor],
    model: object,
    layer: int,
    lo: int,
    optimizer: torch.optim.Optimizer | None,
    probe: torch.Tensor | None,
) -> Receipt:
    s = Surgery(model, optimizer)
    layer = s.check_hidden(layer, lo=lo)
    return s.commit(op, layer, singular_values=step(s, layer), probe=probe)


def left_diagonalise(
    model: object,
    layer: int,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    probe: torch.Tensor | None = None,
) -> Receipt:
    """Rotate hidden layer ``layer`` (``0 <= layer <= L-2``) into its singular basis, in place."""
    return _single("left_diagonalise", _left, model, layer, 0, optimizer, probe)


def full_diagonalise(
    model: object,
    layer: int,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    probe: torch.Tensor | None = None,
) -> Receipt:
    """Make ``maps[layer]`` (``1 <= layer <= L-2``) diagonal, in place.

    Raises:
        NotDiagonalisableError: ``maps[layer]`` is a convolution with more than one tap (only
            dense maps and 1x1 convolutions are diagonalisable; ``docs/method.md`` §3).
    """
    return _single("full_diagonalise", _full, model, layer, 1, optimizer, probe)


def sparsify(
    model: object,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    probe: torch.Tensor | None = None,
) -> Receipt:
    """Fully diagonalise every other interior map (``1, 3, 5, ...``), in place.

    Only pointwise maps (dense, or 1x1 convolutions) can be diagonal: the maps chosen are, from
    the first interior one on, each pointwise map not adjacent to the previous choice (for an
    MLP: ``1, 3, 5, ...``). Layers already diagonal are left as they are. Models with fewer than
    two hidden layers have no interior map: the receipt then reports no change.
    """
    s = Surgery(model, optimizer)
    chosen: list[int] = []
    for layer in range(1, s.num_layers - 1):
        if pointwise(s, layer) and (not chosen or chosen[-1] != layer - 1):
            chosen.append(layer)
    layers = tuple(chosen)
    values: list[float] = []
    for layer in layers:
        if not s.diagonal[layer]:
            values.extend(_full(s, layer).tolist())
    return s.commit("sparsify", layers, singular_values=tuple(values), probe=probe)
