"""Task neurons: append or remove input features and output classes.

Maths (``docs/method.md`` §5, last paragraph), as changes of basis of the
input space (``W_0 <- W_0 A^T``) or the output space (``W_{L-1} <- A W_{L-1}``, same for its bias
and psi):

* :func:`add_inputs`: zero columns in ``W_0``: exact (new features are ignored until trained);
* :func:`remove_inputs`: drop the last columns of ``W_0``: exact only when those weights or
  features are zero; bound ``C_0 ||W_0[:, removed]||_2 |x_removed|`` (:mod:`isoproof.ops._bounds`);
* :func:`add_outputs`: zero rows, bias and psi entries: the existing outputs are exactly
  unchanged and the new ones read 0;
* :func:`remove_outputs`: drop the last outputs: the remaining ones are exactly unchanged.

Example::

    >>> model = IsotropicMLP([4, 6, 3], dtype=torch.float64)
    >>> x = torch.randn(8, 4, dtype=torch.float64)
    >>> y = model(x)
    >>> receipt = add_inputs(model, 2)
    >>> torch.allclose(model(torch.cat([x, torch.randn(8, 2, dtype=x.dtype)], -1)), y)
    True
"""

from __future__ import annotations

import torch

from .._validate import check_int
from ..exceptions import NotIsotropicError, WidthError
from ..receipt import Receipt
from ._bounds import downstream_lipschitz, spectral_bound
from ._surgery import Surgery, embedding

__all__ = ["add_inputs", "add_outputs", "remove_inputs", "remove_outputs"]


def _shrink_check(width: int, n: int, what: str) -> None:
    if n >= width:
        raise WidthError(f"expected to remove at most {width - 1} of the {width} {what}, got n={n}")


def _input_surgery(model: object, optimizer: torch.optim.Optimizer | None) -> Surgery:
    """A workspace for the input-feature operations, which are defined for MLPs only."""
    s = Surgery(model, optimizer)
    if s.model.num_conv:
        raise NotIsotropicError(
            "expected an IsotropicMLP (input features are the columns of its first dense map), "
            f"got {type(s.model).__name__} (input channels are not supported)"
        )
    return s


def _resize_outputs(
    op: str,
    model: object,
    delta: int,
    optimizer: torch.optim.Optimizer | None,
    probe: torch.Tensor | None,
) -> Receipt:
    """Append (``delta > 0``) or drop (``delta < 0``) the last outputs: a change of basis of the
    output space; the kept outputs are exactly unchanged."""
    s = Surgery(model, optimizer)
    nL = s.widths[-1]
    if delta < 0:
        _shrink_check(nL, -delta, "outputs")
    s.change_basis(s.num_layers - 1, embedding(nL, nL + delta))
    return s.commit(op, None, probe=probe)


def add_inputs(
    model: object,
    n: int,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    probe: torch.Tensor | None = None,
) -> Receipt:
    """Append ``n`` input features (zero columns of ``W_0``); exact. ``probe`` has the old width."""
    s = _input_surgery(model, optimizer)
    n = check_int(n, "n", lo=1, error=WidthError)
    n0 = s.widths[0]
    s.change_basis(-1, embedding(n0, n0 + n))
    return s.commit(
        "add_inputs",
        None,
        probe=probe,
        probe_map=lambda x: torch.cat([x, x.new_zeros(*x.shape[:-1], n)], dim=-1),
    )


def remove_inputs(
    model: object,
    n: int,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    probe: torch.Tensor | None = None,
    input_norm: float | None = None,
) -> Receipt:
    """Remove the last ``n`` input features. Bound per ``input_norm`` (the norm of the removed
    features; measured on ``probe`` if given, else 1)."""
    s = _input_surgery(model, optimizer)
    n = check_int(n, "n", lo=1, error=WidthError)
    n0 = s.widths[0]
    _shrink_check(n0, n, "input features")
    if input_norm is None:
        input_norm = (
            1.0 if probe is None else float(probe[..., n0 - n :].double().norm(dim=-1).max())
        )
    w_removed = spectral_bound(s.W[0][:, n0 - n :])
    lip = downstream_lipschitz(s, s.model, 0) if s.num_layers > 1 else 1.0
    s.change_basis(-1, embedding(n0, n0 - n))
    return s.commit(
        "remove_inputs",
        None,
        bound=lip * w_removed * input_norm,
        probe=probe,
        probe_map=lambda x: x[..., : n0 - n],
    )


def add_outputs(
    model: object,
    n: int,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    probe: torch.Tensor | None = None,
) -> Receipt:
    """Append ``n`` outputs (zero rows, bias, psi entries); existing outputs exactly unchanged."""
    return _resize_outputs(
        "add_outputs", model, check_int(n, "n", lo=1, error=WidthError), optimizer, probe
    )


def remove_outputs(
    model: object,
    n: int,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    probe: torch.Tensor | None = None,
) -> Receipt:
    """Remove the last ``n`` outputs; the remaining outputs are exactly unchanged."""
    return _resize_outputs(
        "remove_outputs", model, -check_int(n, "n", lo=1, error=WidthError), optimizer, probe
    )
