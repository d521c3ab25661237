"""``rotate``: absorb an orthogonal change of basis into a hidden layer.

Maths (``docs/method.md`` §1): for every orthogonal ``Q`` (rotations and
reflections) the isotropic activation commutes with ``Q``, hence::

    W_{l+1} f(W_l a + b_l + psi g) = (W_{l+1} Q) f(Q^T W_l a + Q^T b_l + Q^T psi g)

``rotate(model, l, Q)`` applies ``W_l <- Q^T W_l``, ``b_l <- Q^T b_l``, ``psi_l <- Q^T psi_l`` and
``W_{l+1} <- W_{l+1} Q`` (exact: see ``proofs/reparameterisation.py``). The function is unchanged up
to rounding; Adam/SGD first moments are rotated exactly with the parameters.

Example::

    >>> model = IsotropicMLP([4, 6, 3], dtype=torch.float64)
    >>> x = torch.randn(8, 4, dtype=torch.float64)
    >>> y = model(x)
    >>> Q = torch.linalg.qr(torch.randn(6, 6, dtype=torch.float64))[0]
    >>> receipt = rotate(model, 0, Q)
    >>> torch.allclose(model(x), y, atol=1e-12)
    True
"""

from __future__ import annotations

import torch

from ..exceptions import NonFiniteError, NotOrthogonalError, WidthError
from ..receipt import Receipt
from ._surgery import Surgery

__all__ = ["check_orthogonal", "rotate"]


def check_orthogonal(Q: object, n: int, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Validate that ``Q`` is an ``[n, n]`` orthogonal matrix; return it as float64.

    The tolerance scales with the precision the result is stored in, ``dtype`` (the model's;
    ``Q``'s own dtype if ``None``): ``max |Q^T Q - I| <= 100 * n * eps(dtype)``. So a float32
    ``Q`` (defect ~1e-7) is refused for a float64 model, whose receipt would otherwise claim an
    exact rotation while the output moves by ~1e-7: orthonormalise it in float64 first
    (``torch.linalg.qr(Q.double())[0]``).
    """
    if not isinstance(Q, torch.Tensor):
        raise NotOrthogonalError(
            f"expected a torch.Tensor of shape [{n}, {n}], got {type(Q).__name__}"
        )
    if tuple(Q.shape) != (n, n):
        raise WidthError(f"expected Q of shape [{n}, {n}] for this layer, got {list(Q.shape)}")
    if not Q.is_floating_point():
        raise NotOrthogonalError(f"expected a floating-point Q, got dtype {Q.dtype}")
    if not torch.isfinite(Q).all():
        raise NonFiniteError("expected a finite Q, got NaN/Inf entries")
    Q64 = Q.detach().to(torch.float64)
    err = float((Q64.T @ Q64 - torch.eye(n, dtype=torch.float64, device=Q.device)).abs().max())
    dtype = Q.dtype if dtype is None else dtype
    tol = 100 * n * torch.finfo(dtype).eps
    if err > tol:
        raise NotOrthogonalError(
            f"expected an orthogonal Q (max |Q^T Q - I| <= {tol:.2g} for a {dtype} model), got "
            f"{err:.3g} (orthonormalise Q in float64: torch.linalg.qr(Q.double())[0])"
        )
    return Q64


def rotate(
    model: object,
    layer: int,
    Q: torch.Tensor,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    probe: torch.Tensor | None = None,
) -> Receipt:
    """Absorb the orthogonal ``Q`` (``[n_l, n_l]``) into hidden layer ``layer``, in place.

    Raises:
        LayerIndexError: ``layer`` not in ``[0, L-2]``.
        NotOrthogonalError / WidthError / NonFiniteError: bad ``Q``.
    """
    s = Surgery(model, optimizer)
    layer = s.check_hidden(layer)
    Q64 = check_orthogonal(Q, s.widths[layer + 1], s.model.dtype)
    s.change_basis(layer, Q64.T.to(s.W[0].device))  # exact: see proofs/reparameterisation.py
    return s.commit("rotate", layer, probe=probe)
