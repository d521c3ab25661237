"""Reusable invariance assertions (in the spirit of ``e3nn.util.test.assert_equivariant``).

* :func:`assert_equivariant` checks ``f(Q x) = Q f(x)`` for Haar-random orthogonal ``Q`` (rotations
  and, optionally, reflections) acting on the last axis;
* :func:`assert_function_preserved` checks that two models agree on a batch.

Tolerances default per dtype (``default_atol``, the one tolerance table of the project: the tests
and :mod:`isoproof.exporters.verify` read it): float64 1e-12 (1e-10 between two runtimes, whose
summation orders differ), float32 1e-5, float16 1e-2, bfloat16 2e-2,
scaled by the output's magnitude (``atol * max(1, max|y|)``). Both raise ``AssertionError`` with the
measured error, and are themselves tested to fail on counter-examples (elementwise tanh; a perturbed
copy of a model).

Example::

    >>> act = IsotropicActivation("tanh", intrinsic_length="constant", init_length=0.1)
    >>> assert_equivariant(act, torch.randn(16, 5, dtype=torch.float64)) < 1e-12
    True
"""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = [
    "adversarial_inputs",
    "assert_equivariant",
    "assert_function_preserved",
    "default_atol",
    "random_orthogonal",
]

_ATOL = {torch.float64: 1e-12, torch.float32: 1e-5, torch.float16: 1e-2, torch.bfloat16: 2e-2}
_ACROSS_RUNTIMES = {torch.float64: 1e-10}  # torch vs ONNX Runtime: other kernels, other sums


def default_atol(dtype: torch.dtype, *, across_runtimes: bool = False) -> float:
    """The default absolute tolerance for outputs of order 1 in ``dtype``; with
    ``across_runtimes`` for comparing two runtimes (e.g. torch and an exported ONNX file).

    Example::

        >>> default_atol(torch.float32), default_atol(torch.float64, across_runtimes=True)
        (1e-05, 1e-10)
    """
    if across_runtimes and dtype in _ACROSS_RUNTIMES:
        return _ACROSS_RUNTIMES[dtype]
    return _ATOL.get(dtype, 1e-5)


def random_orthogonal(
    n: int,
    *,
    reflection: bool = False,
    dtype: torch.dtype = torch.float64,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """A Haar-random ``[n, n]`` orthogonal matrix, ``det = -1`` if ``reflection`` else ``+1``."""
    a = torch.randn(n, n, dtype=torch.float64, generator=generator)
    q, r = torch.linalg.qr(a)
    q = q * torch.sign(torch.diagonal(r))  # Haar measure
    if (torch.linalg.det(q) < 0) != reflection:
        q[:, 0] = -q[:, 0]
    return q.to(dtype)


def _tolerance(y: torch.Tensor, atol: float | None) -> float:
    base = default_atol(y.dtype) if atol is None else atol
    return base * max(1.0, float(y.detach().abs().max()) if y.numel() else 1.0)


def assert_equivariant(
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    *,
    trials: int = 4,
    reflections: bool = True,
    atol: float | None = None,
    generator: torch.Generator | None = None,
    dim: int = -1,
) -> float:
    """Assert ``fn(x Q^T) == fn(x) Q^T`` for ``trials`` random ``Q`` (half of them reflections).

    ``x`` is ``[..., n]``; ``fn`` must act on the last axis, or on axis ``dim`` (e.g. ``dim=1``,
    the channels of ``[B, C, H, W]``: the same ``Q`` then acts at every position). Returns the
    largest error seen.
    """
    n = x.shape[dim]
    with torch.no_grad():
        y = fn(x)

    def rot(t: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        return t @ q.T if dim in (-1, t.dim() - 1) else (t.movedim(dim, -1) @ q.T).movedim(-1, dim)

    worst = 0.0
    for t in range(trials):
        q = random_orthogonal(
            n, reflection=reflections and t % 2 == 1, dtype=x.dtype, generator=generator
        ).to(x.device)
        with torch.no_grad():
            lhs, rhs = fn(rot(x, q)), rot(y, q)
        err = float((lhs.double() - rhs.double()).abs().max())
        tol = _tolerance(rhs, atol)
        if not err <= tol:
            kind = "reflection" if reflections and t % 2 == 1 else "rotation"
            raise AssertionError(
                f"not O({n})-equivariant: max |f(Qx) - Q f(x)| = {err:.3g} > {tol:.3g} "
                f"for a random {kind} (trial {t + 1}/{trials}, dtype {x.dtype})"
            )
        worst = max(worst, err)
    return worst


def assert_function_preserved(
    before: Callable[[torch.Tensor], torch.Tensor],
    after: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    *,
    atol: float | None = None,
) -> float:
    """Assert ``before(x) == after(x)`` within tolerance; returns ``max |after - before|``.

    When the output widths differ (task neurons), the common leading outputs are compared.
    """
    with torch.no_grad():
        y0, y1 = before(x), after(x)
    k = min(y0.shape[-1], y1.shape[-1])
    err = float((y1[..., :k].double() - y0[..., :k].double()).abs().max())
    tol = _tolerance(y0, atol)
    if not err <= tol:
        raise AssertionError(f"function changed: max |after - before| = {err:.3g} > {tol:.3g}")
    return err


def adversarial_inputs(
    first: torch.nn.Module, rows: int = 16, *, generator: torch.Generator | None = None
) -> dict[str, torch.Tensor]:
    """Named float64 input batches ``[rows, n_in]`` that stress a network's numerics.

    ``first`` is the model's first affine map (``y = W x + b``). Sets: ``random`` (N(0, 1)),
    ``zero``, ``tiny`` (norm 1e-30: every norm sits on the ``eps`` clamp), ``huge`` (norm 1e30:
    overflow of ``|z|^2`` in float32) and ``cancel`` (``x = -W^+ b + 1e-3 u``: ``W x`` and ``b``
    cancel, so the first pre-activation is small against its terms, where an expanded quadratic
    form ``|Wx|^2 + 2 x.W^T b + |b|^2`` loses every digit).
    """
    w = first.weight.detach().to(torch.float64)
    b = first.bias.detach().to(torch.float64)
    n = w.shape[1]
    u = torch.randn(rows, n, dtype=torch.float64, generator=generator)
    direction = u / u.norm(dim=1, keepdim=True)
    base = -(torch.linalg.pinv(w) @ b)
    return {
        "random": u,
        "zero": torch.zeros(rows, n, dtype=torch.float64),
        "tiny": 1e-30 * direction,
        "huge": 1e30 * direction,
        "cancel": base + 1e-3 * direction,
    }
