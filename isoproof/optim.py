"""Optimiser state through structural operations.

Every structural operation is, on each parameter it touches, a linear map ``p' = A p B^T``
(``A`` acting on rows, ``B`` on columns; vectors use ``A`` only) plus an offset that the optimiser
never sees (new outgoing columns, the ``o`` and psi corrections). :func:`apply_linear` is the one
routine that applies such a map, to parameter values and to optimiser moments alike
(``docs/method.md`` §6):

* first moments (``exp_avg``, ``momentum_buffer``) go through the same map: exact, because the
  gradient of the reparameterised loss is the mapped gradient for orthogonal ``A``, ``B``;
* second moments (``exp_avg_sq``, ``max_exp_avg_sq``) go through the elementwise-squared map
  ``(A∘A) v (B∘B)^T``: a diagonal approximation (Adam is not rotation-equivariant);
* rows or columns that an operation creates get zero moments (they are zero rows of ``A``);
* ``step`` and hyper-parameters are kept; ``param_groups`` are re-pointed to new Parameters.

Only ``torch.optim.SGD``, ``Adam`` and ``AdamW`` are supported; anything else raises
:class:`~isoproof.exceptions.UnsupportedOptimizerError` before anything changes.

Example (SGD momentum commutes with rotation exactly)::

    >>> A = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64))[0]
    >>> m = torch.randn(3, 2, dtype=torch.float64)
    >>> torch.allclose(apply_linear(apply_linear(m, A), A.T), m)
    True
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from ._validate import all_finite
from .exceptions import NonFiniteError, UnsupportedOptimizerError

__all__ = [
    "FIRST_MOMENTS",
    "SECOND_MOMENTS",
    "SUPPORTED_OPTIMIZERS",
    "Complement",
    "Embedding",
    "apply_linear",
    "check_optimizer",
    "read_moments",
    "write_moments",
]

FIRST_MOMENTS: tuple[str, ...] = ("exp_avg", "momentum_buffer")
SECOND_MOMENTS: tuple[str, ...] = ("exp_avg_sq", "max_exp_avg_sq")
SUPPORTED_OPTIMIZERS: tuple[type[torch.optim.Optimizer], ...] = (
    torch.optim.SGD,
    torch.optim.Adam,
    torch.optim.AdamW,
)

Moments = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Embedding:
    """The ``[n_new, n_old]`` change of basis that keeps the first ``min(n_old, n_new)``
    coordinates: zero rows append coordinates (``n_new > n_old``), missing rows drop the last
    ones. It is a 0/1 selection, so :func:`apply_linear` applies it by slicing or zero padding,
    never by a matrix product (dropping one row of a 1024-wide map: 0.003 s instead of 0.14 s).
    Its elementwise square is itself, so second moments take the same path.

    Example::

        >>> e = Embedding(3, 2)
        >>> t = torch.arange(6.0).reshape(3, 2)
        >>> torch.equal(apply_linear(t, e), e.matrix(t.dtype) @ t)
        True
    """

    n_old: int
    n_new: int

    def matrix(self, dtype: torch.dtype = torch.float64, device: object = None) -> torch.Tensor:
        """The dense ``[n_new, n_old]`` matrix (for reading and tests)."""
        out = torch.zeros(self.n_new, self.n_old, dtype=dtype, device=device)  # type: ignore[arg-type]
        k = min(self.n_old, self.n_new)
        out[:k, :k] = torch.eye(k, dtype=dtype, device=device)  # type: ignore[arg-type]
        return out

    def apply(self, t: torch.Tensor, axis: int) -> torch.Tensor:
        """``t`` with axis ``axis`` cut or zero-padded from ``n_old`` to ``n_new`` entries."""
        if t.shape[axis] != self.n_old:
            raise ValueError(f"expected {self.n_old} entries on axis {axis}, got {t.shape[axis]}")
        if self.n_new <= self.n_old:
            return t.narrow(axis, 0, self.n_new).clone()
        pad = list(t.shape)
        pad[axis] = self.n_new - self.n_old
        return torch.cat([t, t.new_zeros(pad)], dim=axis)


@dataclass(frozen=True)
class Complement:
    """The ``[n - k, n]`` change of basis onto the orthogonal complement of ``k`` orthonormal
    columns ``N`` (``[n, k]``): ``C = Q[:, k:]^T`` with ``Q = H_1 ... H_k`` the Householder
    reflections of the QR factorisation of ``N`` (``Q[:, :k]`` spans ``N``), held in compact-WY
    form ``Q = I - V M^{-1} V^T`` (``V`` the unit lower-trapezoidal reflectors, ``M`` upper
    triangular: the strict upper part of ``V^T V`` plus ``diag(1 / tau)``). Applying it is two
    products with ``V`` and a triangular solve, about ``4 k n m`` operations on a map with ``m``
    entries on the other axis against ``2 (n - k) n m`` for the dense ``[n - k, n]`` product:
    fewer whenever ``k < n / 3`` (``k = 1`` of 1024: 500x). Second moments take the dense
    matrix (``C∘C`` has no reflection form).

    Example::

        >>> N = torch.linalg.qr(torch.randn(5, 2, dtype=torch.float64))[0]
        >>> c = Complement.of(N)
        >>> C = c.matrix()
        >>> bool((C @ N).abs().max() < 1e-14), bool((C @ C.T - torch.eye(3)).abs().max() < 1e-14)
        (True, True)
        >>> t = torch.randn(5, 4, dtype=torch.float64)
        >>> torch.allclose(apply_linear(t, c), C @ t)
        True
    """

    V: torch.Tensor
    M: torch.Tensor

    @classmethod
    def of(cls, N: torch.Tensor) -> Complement:
        """The complement of the columns of ``N`` (orthonormal, ``[n, k]``, ``k < n``)."""
        a, tau = torch.geqrf(N)
        k = tau.numel()
        V = torch.tril(a, -1) + torch.eye(*a.shape, dtype=a.dtype, device=a.device)
        return cls(V, torch.triu(V.T @ V, 1) + torch.diag(1 / tau[:k]))

    @property
    def n_old(self) -> int:
        return int(self.V.shape[0])

    @property
    def n_new(self) -> int:
        return int(self.V.shape[0] - self.V.shape[1])

    def matrix(self, dtype: torch.dtype = torch.float64, device: object = None) -> torch.Tensor:
        """The dense ``[n - k, n]`` matrix (second moments, reading and tests)."""
        eye = torch.eye(self.n_old, dtype=self.V.dtype, device=self.V.device)
        return self.apply(eye, 0).to(dtype=dtype, device=device)  # type: ignore[arg-type]

    def apply(self, t: torch.Tensor, axis: int) -> torch.Tensor:
        """``C`` applied to axis ``axis`` (0 or 1) of ``t``, which has ``n`` entries there."""
        V, M, n, k = self.V, self.M, self.n_old, self.n_old - self.n_new
        if t.shape[axis] != n:
            raise ValueError(f"expected {n} entries on axis {axis}, got {t.shape[axis]}")
        if axis == 0:  # C t = (Q^T t)[k:] = t[k:] - V[k:] M^{-T} (V^T t)
            flat = t.reshape(n, -1)
            y = torch.linalg.solve_triangular(M.T, V.T @ flat, upper=False)
            return (flat[k:] - V[k:] @ y).reshape(n - k, *t.shape[1:])
        moved = t.movedim(1, -1)  # t C^T = (t Q)[..., k:] = t[..., k:] - (t V) M^{-1} V[k:]^T
        flat = moved.reshape(-1, n)
        x = torch.linalg.solve_triangular(M, flat @ V, upper=True, left=False)
        out = (flat[:, k:] - x @ V[k:].T).reshape(*moved.shape[:-1], n - k)
        return out.movedim(-1, 1).contiguous()


Map = torch.Tensor | Embedding | Complement


def apply_linear(
    t: torch.Tensor,
    rows: Map | None = None,
    cols: Map | None = None,
    *,
    second_moment: bool = False,
) -> torch.Tensor:
    """Return ``rows @ t @ cols^T`` (``rows @ t`` for vectors); squared maps for second moments.

    Shapes: ``t`` is ``[m]``, ``[m, n]`` or ``[m, n, *rest]`` (a conv kernel
    ``[C_out, C_in, *k]``, a psi kernel ``[C, *k]``): ``rows`` (``[m', m]``) acts on axis 0 and
    ``cols`` (``[n', n]``) on axis 1, the same at every index of ``rest``.
    """
    if second_moment:  # an Embedding is its own square
        rows, cols = _squared(rows), _squared(cols)
    if isinstance(rows, Embedding | Complement):
        t = rows.apply(t, 0)
    elif rows is not None:
        t = rows @ t if t.dim() <= 2 else torch.tensordot(rows, t, dims=([1], [0]))
    if isinstance(cols, Embedding | Complement):
        t = cols.apply(t, 1)
    elif cols is not None:
        if t.dim() <= 2:
            t = t @ cols.T
        else:
            t = torch.movedim(torch.tensordot(t, cols, dims=([1], [1])), -1, 1)
    return t


def _squared(m: Map | None) -> Map | None:
    """The elementwise square of a map (second moments)."""
    if isinstance(m, Complement):
        m = m.matrix()
    return m * m if isinstance(m, torch.Tensor) else m


def check_optimizer(optimizer: object) -> None:
    """Raise :class:`UnsupportedOptimizerError` unless ``optimizer`` is SGD, Adam or AdamW."""
    if optimizer is None:
        return
    if not isinstance(optimizer, SUPPORTED_OPTIMIZERS):
        names = ", ".join(c.__name__ for c in SUPPORTED_OPTIMIZERS)
        raise UnsupportedOptimizerError(
            f"expected one of {names} (state transforms are defined for them), "
            f"got {type(optimizer).__name__}"
        )


def read_moments(
    optimizer: torch.optim.Optimizer | None, params: Mapping[Hashable, nn.Parameter]
) -> dict[Hashable, Moments]:
    """Float64 copies of the moment tensors of each parameter in ``params`` (keyed like it).

    Raises:
        UnsupportedOptimizerError: the optimizer holds none of ``params`` (built for another
            model: its state would silently stop following this one).
        NonFiniteError: a moment holds NaN/Inf (a change of basis would spread it to every
            entry of the mixed rows, e.g. one NaN to 16 entries after ``sparsify``).
    """
    out: dict[Hashable, Moments] = {}
    if optimizer is None:
        return out
    held = {id(p) for group in optimizer.param_groups for p in group["params"]}
    if params and not any(id(p) in held for p in params.values()):
        raise UnsupportedOptimizerError(
            "expected an optimizer over this model's parameters, got one holding none of them "
            "(built for another model?)"
        )
    for key, p in params.items():
        state = optimizer.state.get(p)
        if not state:
            continue
        moments = {
            name: v.detach().to(torch.float64).clone()
            for name, v in state.items()
            if name in FIRST_MOMENTS + SECOND_MOMENTS and isinstance(v, torch.Tensor)
        }
        for name, v in moments.items():
            if not all_finite(v):
                raise NonFiniteError(f"expected finite optimizer moments, got NaN/Inf in {name!r}")
        if moments:
            out[key] = moments
    return out


def write_moments(
    optimizer: torch.optim.Optimizer | None,
    old: Mapping[Hashable, nn.Parameter],
    new: Mapping[Hashable, nn.Parameter],
    moments: Mapping[Hashable, Moments],
) -> None:
    """Move optimizer state from ``old[key]`` to ``new[key]`` with the mapped ``moments[key]``.

    Parameters may be the same object (in-place updates) or new ones (resized): param_groups are
    re-pointed, ``step`` and other entries are carried over, moments are cast to the new dtype.
    """
    if optimizer is None:
        return
    replaced = {id(old[k]): new[k] for k in old if k in new and old[k] is not new[k]}
    for group in optimizer.param_groups:
        group["params"] = [replaced.get(id(p), p) for p in group["params"]]
    for key, p_old in old.items():
        p_new = new.get(key)
        if p_new is None:
            continue
        state = optimizer.state.pop(p_old, None)
        if state is None:
            continue
        updated = dict(state)
        for name, value in moments.get(key, {}).items():
            updated[name] = value.to(dtype=p_new.dtype, device=p_new.device).reshape(p_new.shape)
        optimizer.state[p_new] = updated
