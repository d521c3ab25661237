"""Matching a stored-parameter budget: the counts and the exhaustive knob search.

Step 1 of the compression benchmark (:mod:`benchmarks.compression`). Every method has integer
knobs (hidden widths, or one rank per group of affine maps); :func:`search` enumerates every
setting whose stored count lies within :data:`TOLERANCE` of the target and picks the one the
method's own criterion prefers.

Example::

    >>> search([5, 5], lambda k: 10 * k[0] + k[1], lambda k: -(k[0] + k[1]), 23, tol=0.05)
    (2, 4)
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import nn

import isoproof as ip
from isoproof.standard import linear_layers, widths_of

__all__ = [
    "TOLERANCE",
    "Group",
    "Infeasible",
    "count_of",
    "factor_groups",
    "no_plan",
    "plan_ranks",
    "plan_widths",
    "rank_config",
    "search",
]

TOLERANCE = 0.02
Knobs = tuple[int, ...]
_CHUNK = 1 << 20  # grid points :func:`search` evaluates at once


# ---------------------------------------------------------------------------- counting
def _widths_count(model: nn.Module, sparsified: bool) -> Callable[[list[Any]], np.ndarray]:
    """Stored count as a function of the hidden widths (broadcastable integer arrays).

    Isotropic: ``sum_i (w_i w_{i+1} + w_{i+1}) + sum_{i>=2} w_i (psi) + (L - 1) (o)``, with
    ``min(w_i, w_{i+1})`` for the diagonal maps ``1, 3, ..`` when ``sparsified``; standard: the
    weights and biases. :func:`compress` checks it against the real count.
    """
    iso = isinstance(model, ip.IsotropicMLP)
    dims = widths_of(model)
    L = len(dims) - 1

    def count(hidden: list[Any]) -> np.ndarray:
        w = [np.int64(dims[0]), *(np.asarray(h, np.int64) for h in hidden), np.int64(dims[-1])]
        total: Any = np.int64(0)
        for i in range(L):
            diagonal = iso and sparsified and i % 2 == 1 and i < L - 1
            total = total + (np.minimum(w[i], w[i + 1]) if diagonal else w[i] * w[i + 1])
            total = total + w[i + 1]
        if iso and model.psi_mode != "none":
            total = total + sum(w[2:], np.int64(0))
        if iso and model.intrinsic_length != "none":
            total = total + (L - 1)
        return np.asarray(total)

    return count


def count_of(model: ip.IsotropicMLP, widths: Sequence[int], sparse: bool) -> int:
    return int(_widths_count(model, sparse)(list(widths[1:-1])))


# ---------------------------------------------------------------------------- budget search
def search(
    sizes: Sequence[int],
    count: Callable[[list[np.ndarray]], np.ndarray],
    cost: Callable[[list[np.ndarray]], np.ndarray],
    target: float,
    tol: float = TOLERANCE,
) -> Knobs | None:
    """The knob setting (one index per axis, ``0 <= k_a < sizes[a]``) whose ``count`` lies in
    ``[(1 - tol) target, (1 + tol) target]`` with the least ``cost`` (ties: the larger count), or
    ``None`` if no setting is within the tolerance.

    ``count`` and ``cost`` take a list of broadcastable index arrays and return arrays. The grid
    is enumerated exhaustively: the last two axes vectorised, the others in chunks.

    Example::

        >>> search([5, 5], lambda k: 10 * k[0] + k[1], lambda k: -(k[0] + k[1]), 23, tol=0.05)
        (2, 4)
    """
    lo, hi = (1 - tol) * target, (1 + tol) * target
    pad = max(0, 3 - len(sizes))
    full = [1] * pad + [int(n) for n in sizes]  # at least three axes: (outer..., a, b)
    na, nb = full[-2:]
    outer = np.array(list(itertools.product(*(range(n) for n in full[:-2]))), dtype=np.int64)
    a, b = np.arange(na).reshape(1, na, 1), np.arange(nb).reshape(1, 1, nb)
    step = max(1, _CHUNK // (na * nb))
    best: tuple[float, float, Knobs] | None = None
    for start in range(0, len(outer), step):
        heads = outer[start : start + step]
        knobs = [*(heads[:, i].reshape(-1, 1, 1) for i in range(heads.shape[1])), a, b][pad:]
        shape = (len(heads), na, nb)
        c = np.broadcast_to(count(knobs), shape).astype(np.float64).ravel()
        ok = (c >= lo) & (c <= hi)
        if not ok.any():
            continue
        v = np.where(ok, np.broadcast_to(cost(knobs), shape).ravel(), np.inf)
        ties = np.flatnonzero(v == v.min())
        pick = int(ties[np.argmax(c[ties])])
        key = (float(v[pick]), -float(c[pick]))
        if best is None or key < best[:2]:
            row, i, j = np.unravel_index(pick, shape)
            best = (*key, (*(int(h) for h in heads[row]), int(i), int(j))[pad:])
    return None if best is None else best[2]


def plan_widths(
    model: nn.Module,
    scores: Sequence[np.ndarray | None],
    target: float,
    *,
    sparsified: bool = False,
    coupled: bool = False,
    uniform: bool = False,
) -> tuple[tuple[int, ...], float] | None:
    """Hidden widths within the tolerance of ``target`` removing the least total score (each
    layer loses its lowest-scored neurons first); returns ``(widths, removed score)`` or ``None``.

    ``scores[h]``: one score per neuron of hidden layer ``h``, or ``None`` to keep the layer's
    current width. ``coupled`` (isotropic models): narrowing layer ``h - 1`` to ``w`` leaves
    ``W_h`` with rank at most ``w``, so ``n_h - w`` neurons of layer ``h`` get ``sigma = 0`` and
    cost nothing to remove; they are modelled as replacing layer ``h``'s lowest scores.
    """
    current = widths_of(model)[1:-1]
    cums, sizes, lows = [], [], []
    for s, w in zip(scores, current, strict=True):
        if s is None:
            cums.append(np.zeros(1))
            sizes.append(1)
            lows.append(w)
        else:
            cums.append(np.concatenate([[0.0], np.cumsum(np.sort(np.asarray(s, np.float64)))]))
            sizes.append(len(s))
            lows.append(1)
    count = _widths_count(model, sparsified)

    def widths(k: list[np.ndarray]) -> list[np.ndarray]:
        return [ki + lo for ki, lo in zip(k, lows, strict=True)]

    def cost(k: list[np.ndarray]) -> np.ndarray:
        w = widths(k)
        total: Any = np.float64(0)
        for h, (c, n, lo) in enumerate(zip(cums, sizes, lows, strict=True)):
            if lo > 1:  # kept at its current width
                continue
            removed = n - w[h]
            free = np.maximum(0, n - w[h - 1]) if coupled and h > 0 else 0
            total = total + c[removed] - c[np.minimum(free, removed)]
        return np.asarray(total)

    def spread(k: list[np.ndarray]) -> np.ndarray:  # of the kept fractions w_h / n_h
        kept = np.broadcast_arrays(*(w / n for w, n in zip(widths(k), current, strict=True)))
        return np.maximum.reduce(kept) - np.minimum.reduce(kept)

    knobs = search(sizes, lambda k: count(widths(k)), spread if uniform else cost, target)
    if knobs is None:
        return None
    arrays = [np.asarray(k) for k in knobs]
    return tuple(int(w) for w in widths(arrays)), float(cost(arrays))


@dataclass(frozen=True)
class Group:
    """Affine maps reading one input width, factored with one rank (or kept dense)."""

    maps: tuple[int, ...]
    n: int  # input width
    outs: tuple[int, ...]  # output widths

    @property
    def dense(self) -> int:
        return self.n * sum(self.outs)

    def ranks(self) -> list[int | None]:
        """``[None (dense), 1, 2, ..]``: the ranks that store fewer numbers than dense."""
        s = sum(self.outs)
        return [None, *range(1, (self.n * s - 1) // (self.n + s) + 1)]

    def cost(self, rank: int | None) -> int:
        return self.dense if rank is None else rank * (self.n + sum(self.outs))


def plan_ranks(
    groups: Sequence[Group],
    fixed: int,
    target: float,
    cost: Callable[[list[np.ndarray], list[np.ndarray]], np.ndarray],
) -> tuple[int | None, ...] | None:
    """One rank per group (``None``: dense) within the tolerance of ``target``, least ``cost``.

    ``fixed`` is the stored count outside the groups; ``cost(fractions, indices)`` gets the kept
    fraction (``stored / dense``) and the option index of every group (broadcastable arrays).
    """
    options = [g.ranks() for g in groups]
    costs = [
        np.array([g.cost(r) for r in o], np.int64) for g, o in zip(groups, options, strict=True)
    ]
    fracs = [c / g.dense for c, g in zip(costs, groups, strict=True)]

    def count(k: list[np.ndarray]) -> np.ndarray:
        return fixed + sum((c[ki] for c, ki in zip(costs, k, strict=True)), np.int64(0))

    def objective(k: list[np.ndarray]) -> np.ndarray:
        return cost([f[ki] for f, ki in zip(fracs, k, strict=True)], k)

    knobs = search([len(o) for o in options], count, objective, target)
    return None if knobs is None else tuple(o[k] for o, k in zip(options, knobs, strict=True))


def factor_groups(model: nn.Module, grouped: bool) -> tuple[list[Group], int]:
    """Every affine map as a group, except that with ``grouped`` the hidden maps ``1 .. L-2``
    form one group when they read equal widths (NGC's ``"consecutive"``); returns the groups in
    map order (first ``[0]``, last ``[L-1]``) and the stored count outside them."""
    lins = linear_layers(model)
    L = len(lins)
    hidden = list(range(1, L - 1))
    if grouped and len(hidden) > 1 and len({lins[i].in_features for i in hidden}) == 1:
        parts = [[0], hidden, [L - 1]]
    else:
        parts = [[i] for i in range(L)]
    groups = [
        Group(tuple(p), lins[p[0]].in_features, tuple(lins[i].out_features for i in p))
        for p in parts
    ]
    return groups, ip.count_parameters(model) - sum(g.dense for g in groups)


def rank_config(groups: Sequence[Group], ranks: Sequence[int | None]) -> list[list[Any]]:
    return [[list(g.maps), "dense" if r is None else r] for g, r in zip(groups, ranks, strict=True)]


class Infeasible(ip.IsoproofError):
    """No knob setting of a method lands within the tolerance of the budget."""


def no_plan(target: float) -> Infeasible:
    return Infeasible(
        f"expected a setting within {TOLERANCE:.0%} of {target:.0f} parameters, got none"
    )
