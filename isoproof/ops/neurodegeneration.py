"""Neurodegeneration: remove the neurons with the smallest singular values.

Maths (``docs/method.md`` §4). Left-diagonalise hidden layer ``l`` (one SVD),
so the ``k`` weakest neurons are the last rows, with pre-activations::

    h*_i = sigma_i (q_i . a_{l-1}) + b*_i + psi*_i g_{l-1}

``b* = (R^T b_l)[-k:]``, ``W* = (W_{l+1} R)[:, -k:]``, ``psi*`` their own psi entries. Remove the
rows, biases and psi entries, and the columns ``W*``; then keep what the neurons still contributed::

    o_l       <- o_l + sum_i b*_i^2        (their constant part of the norm N_l)
    psi_{l+1} <- psi_{l+1} + W* b*          (their constant output, scaled by g_l, reaches l+1)

Only the span of the weakest directions ``N = R[:, -k:]`` is needed: the removed quantities are
read as ``N^T W_l``, ``N^T b_l``, ``N^T psi`` and ``W_{l+1} (N b*)``, and the kept neurons are
the rest in the singular basis (``R[:, :-k]^T``) or, when ``k < width / 3``, in another
orthonormal basis of the same span (:func:`kept_basis`: Householder reflections instead of two
dense products). This is exact when ``sigma_i = 0`` and ``psi*_i = 0`` (exact: see
``proofs/neurodegeneration.py``); otherwise the removed pre-activations differ from ``b*`` by
``delta_i = sigma_i (q_i . a) + psi*_i g``, and the receipt's bound is ``C_l * |delta|`` with
``|delta_i| <= sigma_i A + |psi*_i| G`` (``A`` a bound on ``|a_{l-1}|``, ``G = sup g``, ``C_l`` from
:mod:`isoproof.ops._bounds`): linear in sigma.

With ``psi="none"`` the "expectation" update is used instead:
``b_{l+1} <- b_{l+1} + mean(g_l) W* b*`` (an approximation; the mean gain is recorded during
training or by ``model.record_gains``).
With ``intrinsic_length="none"`` the ``o`` update is impossible and the bound is ``inf`` unless
``b* = 0``.

Example::

    >>> model = IsotropicMLP([4, 6, 3], dtype=torch.float64)
    >>> with torch.no_grad():
    ...     model.linears[0].weight[-1] = 0.0  # a dead neuron: sigma = 0
    ...     _ = model.linears[0].bias.normal_()
    >>> x = torch.randn(8, 4, dtype=torch.float64)
    >>> receipt = prune(model, 0, probe=x)
    >>> model.widths, receipt.max_abs_change < 1e-12
    ([4, 5, 3], True)
"""

from __future__ import annotations

import math

import torch

from .._validate import check_int
from ..exceptions import IsoproofError, MissingGainError, WidthError
from ..optim import Complement, apply_linear
from ..receipt import Receipt
from ._bounds import downstream_lipschitz, hidden_input_bound
from ._surgery import Surgery

__all__ = ["dead_count", "gather_own_psi", "prune", "prune_below", "prune_dead"]

Svd = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def dead_count(S: torch.Tensor) -> int:
    """Neurons with ``sigma = 0`` up to float64 rounding (``S`` descending, zero-padded)."""
    tol = float(S.max()) * S.numel() * torch.finfo(torch.float64).eps if S.numel() else 0.0
    return int(torch.le(S, tol).sum())


def gather_own_psi(
    s: Surgery, h: int, R: torch.Tensor, S: torch.Tensor
) -> tuple[torch.Tensor, int]:
    """Rotate the ``sigma = 0`` neurons of layer ``h`` so one of them carries all their psi.

    Any rotation inside the ``sigma = 0`` subspace leaves the SVD valid (those rows of
    ``R^T W_h`` are zero), so a Householder reflection maps their own psi entries
    ``p = R_0^T psi_{h-1}`` to ``|p| e_1``: the first ``sigma = 0`` neuron carries it and the
    others have ``sigma = 0`` and ``psi* = 0``, i.e. they are exactly removable
    (``proofs/neurodegeneration.py``). Returns the new ``R`` and the number of carriers (0 or 1;
    up to ``min(d, taps)`` for a conv layer's psi kernels, see :func:`_gather_rows`).
    """
    dead = dead_count(S)
    if h == 0 or s.model.psi_mode == "none" or dead == 0:
        return R, 0
    width = R.shape[1]
    null = R[:, width - dead :]
    psi = s.psi[h - 1]
    if psi.dim() > 1:  # a psi kernel or matrix: each channel owns a row of taps/positions
        return _gather_rows(R, null.T @ psi.reshape(psi.shape[0], -1), dead)
    p = null.T @ psi
    norm = float(p.norm())
    if norm == 0.0:
        return R, 0
    if dead > 1:
        v = p.clone()
        v[0] += norm if float(p[0]) >= 0 else -norm  # Householder: p -> -+|p| e_1
        # null @ (I - 2 v v^T / v.v) as a rank-1 update (no dead x dead matrix, no product)
        known, c = s.dead_rows(h, R), v * (2 / float(v @ v))
        R = R.clone()
        R[:, width - dead :].addr_(null @ v, c, alpha=-1)  # in place, no outer product
        if known is not None and known.shape[0] == dead:  # their rows follow: H (null^T W)
            s.note_dead_rows(h, R, known - torch.outer(c, v @ known))
    return R, 1


def _gather_rows(R: torch.Tensor, P: torch.Tensor, dead: int) -> tuple[torch.Tensor, int]:
    """Conv form of :func:`gather_own_psi`: the dead channels' own psi rows ``P`` (``[d, T]``,
    one psi kernel or psi-matrix row each) span ``r = rank(P) <= min(d, T)`` directions; rotating
    the dead subspace by ``U^T`` (``P = U S V^T``) puts them on ``r`` carriers and leaves
    ``d - r`` channels with ``sigma = 0`` and a zero psi row."""
    U, S, _ = torch.linalg.svd(P, full_matrices=True)
    tol = float(S.max()) * max(P.shape) * torch.finfo(P.dtype).eps if S.numel() else 0.0
    rank = int((tol < S).sum())
    if rank == 0:
        return R, 0
    width = R.shape[1]
    return torch.cat([R[:, : width - dead], R[:, width - dead :] @ U], dim=1), rank


def remove_weakest(
    s: Surgery,
    h: int,
    n: int,
    *,
    svd: Svd | None = None,
    probe: torch.Tensor | None = None,
    input_norm: float | None = None,
    correct_o: bool = True,
    correct_psi: bool = True,
    gather_psi: bool = True,
) -> tuple[torch.Tensor, float]:
    """Remove the ``n`` weakest neurons of hidden layer ``h`` from the workspace ``s``.

    Returns ``(removed singular values, bound)``. ``correct_o``, ``correct_psi`` and
    ``gather_psi`` exist only to demonstrate the negative controls of the maths (all ``True`` in
    every public operation).
    """
    model = s.model
    width = s.widths[h + 1]
    if n >= width:
        raise WidthError(
            f"expected to remove at most {width - 1} of the {width} neurons of hidden layer {h} "
            f"(a layer keeps at least one), got n={n}"
        )
    R, S, _ = s.left_basis(h) if svd is None else svd
    if gather_psi:
        R, _ = gather_own_psi(s, h, R, S)
    keep = width - n
    N = R[:, keep:]  # the weakest directions: after rotating by R^T, the last n neurons
    removed = _removed_norms(s, h, R, n)
    b_star = N.T @ s.b[h]
    if h >= 1 and model.psi_mode != "none":
        own_psi = apply_linear(s.psi[h - 1], N.T)
    else:
        own_psi = b_star.new_zeros(n)
    # ---- bound: |delta_i| <= sqrt(T) (sigma_i A + |psi*_i| G), propagated by C_h
    # (isoproof.ops._bounds; T = taps of maps[h], 1 for a dense map; A, G bound whole fields)
    A = hidden_input_bound(model, h, probe, input_norm, s)
    G = model.radial.gain_bound * (math.sqrt(model.positions(h - 1)) if h >= 1 else 1.0)
    own = own_psi.abs() if own_psi.dim() == 1 else own_psi.flatten(1).norm(dim=1)
    delta = removed * A + own * G if math.isfinite(A) else None
    if delta is None or not bool(torch.isfinite(delta).all()):
        bound = math.inf
    else:
        spread = math.sqrt(model.taps(h)) if h < model.num_conv else 1.0
        bound = downstream_lipschitz(s, model, h) * float(delta.norm()) * spread
    # what the removed neurons' constant part sends to layer h+1, (W_{h+1} N) b* (a kernel:
    # per tap), as one product with the vector N b*
    carried = torch.tensordot(s.W[h + 1], N @ b_star, ([1], [0]))
    # ---- corrections (exact at sigma = 0: see proofs/neurodegeneration.py)
    if model.intrinsic_length != "none" and correct_o:
        s.o[h] = s.o[h] + (b_star * b_star).sum()
    elif bool((b_star != 0).any()):
        bound = math.inf  # the norm loses b*^2 and nothing restores it
    if not correct_psi:
        bound = math.inf
    elif model.psi_mode != "none":
        s.psi[h] = s.psi[h] + carried
    elif bool((carried != 0).any()):
        if carried.dim() > 1:
            raise IsoproofError(
                "expected psi != 'none' to prune a channel of a convolutional net (the "
                "expectation update is defined for IsotropicMLP only), got psi='none'"
            )
        gbar = float(model.gain_means[h])
        if math.isnan(gbar):
            raise MissingGainError(
                f"expected a recorded mean gain for hidden layer {h} (psi='none' prunes with the "
                "expectation update): train the model or call model.record_gains(x), got none"
            )
        s.b[h + 1] = s.b[h + 1] + gbar * carried
        tail = downstream_lipschitz(s, model, h + 1) if h + 1 < s.num_layers - 1 else 1.0
        bound += tail * float(carried.norm()) * max(gbar, G - gbar)
    s.change_basis(h, kept_basis(R, keep))
    return removed, bound


def _removed_norms(s: Surgery, h: int, R: torch.Tensor, n: int) -> torch.Tensor:
    """Norms of the rows actually removed, ``N^T W_h`` for ``N = R[:, -n:]``, measured (equal
    to the last ``S`` up to rounding): the bound holds for them whatever the factorisation's
    accuracy. ``sigma = 0`` rows the factorisation already measured are read, not multiplied
    again (:meth:`~isoproof.ops._surgery.Surgery.dead_rows`)."""
    known = s.dead_rows(h, R)
    if known is not None and n <= known.shape[0]:
        return known[known.shape[0] - n :].norm(dim=1)
    return apply_linear(s.W[h], R[:, R.shape[1] - n :].T).reshape(n, -1).norm(dim=1)


def kept_basis(R: torch.Tensor, keep: int) -> torch.Tensor | Complement:
    """The ``[keep, width]`` change of basis that keeps the span of ``R[:, :keep]`` and drops the
    rest: the dense ``R[:, :keep]^T`` (the kept neurons in the singular basis), or, when fewer
    than a third of the neurons go, the :class:`~isoproof.optim.Complement` of the dropped
    columns, applied by Householder reflections in fewer operations (the kept neurons in
    another orthonormal basis of the same span: exact either way,
    ``proofs/reparameterisation.py``)."""
    width = R.shape[1]
    if 3 * (width - keep) < width:
        return Complement.of(R[:, keep:])
    return R[:, :keep].T


def prune(
    model: object,
    layer: int,
    n: int = 1,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    probe: torch.Tensor | None = None,
    input_norm: float | None = None,
) -> Receipt:
    """Remove the ``n`` smallest-sigma neurons of hidden layer ``layer`` after one SVD, in place.

    Args:
        model: an :class:`~isoproof.IsotropicMLP` or :class:`~isoproof.IsotropicConvNet`.
        layer: hidden layer index in ``[0, L-2]`` (a conv layer's channels, for ``layer <
            model.num_conv``: the psi-kernel update of ``docs/method.md`` §4, convolutions).
        n: how many neurons (at most ``width - 1``).
        optimizer: SGD/Adam/AdamW whose state follows the resize.
        probe: a batch to measure the output change on (``receipt.max_abs_change``).
        input_norm: bound on ``|x|`` used by the receipt's bound when ``layer == 0``.

    Returns:
        A :class:`Receipt` with the removed singular values and the bound of the module docstring.
    """
    s = Surgery(model, optimizer)
    h = s.check_hidden(layer)
    n = check_int(n, "n", lo=1, error=WidthError)
    removed, bound = remove_weakest(s, h, n, probe=probe, input_norm=input_norm)
    return s.commit("prune", h, singular_values=removed, bound=bound, probe=probe)


def prune_dead(
    model: object,
    layer: int | None = None,
    *,
    limit: int | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    probe: torch.Tensor | None = None,
) -> Receipt:
    """Remove every neuron that carries nothing, exactly: ``sigma = 0`` and (after gathering, see
    :func:`gather_own_psi`) no own psi entry, in place.

    Such neurons exist whenever a layer is wider than the rank of its incoming map, e.g. wider
    than its input, or after the previous layer was narrowed. ``layer=None`` sweeps every hidden
    layer first to last, so that narrowing layer ``h`` exposes the dead neurons it creates in
    layer ``h + 1`` within the same call; ``limit`` caps the removals per layer. One neuron per
    layer stays when it must carry the gathered psi component, and every layer keeps at least
    one neuron. The receipt's bound is at rounding level (the removal is exact in exact
    arithmetic: ``proofs/neurodegeneration.py``).

    Example::

        >>> model = IsotropicMLP([3, 8, 8, 2], dtype=torch.float64)
        >>> with torch.no_grad():
        ...     _ = model.psi[0].normal_()
        >>> x = torch.randn(16, 3, dtype=torch.float64)
        >>> receipt = prune_dead(model, probe=x)
        >>> model.widths, receipt.max_abs_change < 1e-12
        ([3, 3, 4, 2], True)
    """
    if limit is not None:
        limit = check_int(limit, "limit", lo=1, error=WidthError)
    s = Surgery(model, optimizer)
    layers = range(s.num_layers - 1) if layer is None else [s.check_hidden(layer)]
    removed: list[float] = []
    bound = 0.0
    for h in layers:
        R, S, Vh = s.left_basis(h)
        R, carriers = gather_own_psi(s, h, R, S)
        n = min(dead_count(S) - carriers, s.widths[h + 1] - 1)
        if limit is not None:
            n = min(n, limit)
        if n > 0:
            values, b = remove_weakest(s, h, n, svd=(R, S, Vh), probe=probe, gather_psi=False)
            removed.extend(values.tolist())
            bound += b
    return s.commit("prune_dead", layer, singular_values=tuple(removed), bound=bound, probe=probe)


def prune_below(
    model: object,
    threshold: float,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    probe: torch.Tensor | None = None,
    input_norm: float | None = None,
) -> Receipt:
    """Remove every neuron with ``sigma <= threshold`` in every hidden layer, last layer first.

    One pass: removing neurons of layer ``h`` can leave layer ``h + 1`` wider than its input, i.e.
    with new structural ``sigma = 0`` rows, which a second call removes. Raises
    :class:`WidthError` (and changes nothing) if a layer would lose all its neurons.
    """
    try:
        threshold = float(threshold)
    except (TypeError, ValueError):
        raise IsoproofError(f"expected a float threshold, got {threshold!r}") from None
    if not math.isfinite(threshold) or threshold < 0:
        raise IsoproofError(f"expected a finite threshold >= 0, got {threshold}")
    s = Surgery(model, optimizer)
    removed: list[float] = []
    bound = 0.0
    for h in reversed(range(s.num_layers - 1)):
        values = s.singular_values(h)  # cheap: the basis is computed only where neurons go
        count = int((values <= threshold).sum())
        if count == 0:
            continue
        if count >= s.widths[h + 1]:
            raise WidthError(
                f"threshold {threshold:g} would remove all {count} neurons of hidden layer {h} "
                f"(largest sigma {float(values[0]):.3g}); expected at least one to remain"
            )
        values, b = remove_weakest(s, h, count, probe=probe, input_norm=input_norm)
        removed.extend(values.tolist())
        bound += b
    return s.commit("prune_below", None, singular_values=tuple(removed), bound=bound, probe=probe)
