"""Compression at matched stored-parameter budgets: isotropic neurodegeneration vs its peers.

GitHub issue 7 (and NGC's part of issue 8). The same trained models are compressed by every
method to a fraction ``rho`` of the *stored parameters* of the dense model of their own family
(isotropic methods: of the dense :class:`~isoproof.IsotropicMLP`; standard methods: of the dense
standard tanh MLP), then evaluated without and with a short fine-tune.

Stored parameters are every number the deployed model keeps: weights (a
:class:`~isoproof.DiagonalLinear` its diagonal, a factored map its two factors), biases, psi
vectors and the intrinsic lengths ``o``: :func:`isoproof.count_parameters` for isotropic models,
the unique ``nn.Parameter`` s (by identity) otherwise (:func:`isoproof.count_parameters`).

Methods (:data:`METHODS`; hidden layer ``h`` is the output of affine map ``h``):

==============  =========  ==================================================================
name            model      what it does
==============  =========  ==================================================================
isoproof        isotropic  :func:`remove_dead` + :func:`isoproof.prune` of the smallest-sigma
                           neurons (o and psi corrections), then :func:`isoproof.sparsify`
                           when the sparsified plan removes less (it is exact and free)
isoproof-prune  isotropic  the same pruning, never sparsified
tp-standard     standard   Torch-Pruning: ``MagnitudeImportance(p=2)`` of each neuron group
                           (row of ``W_h``, ``b_h``, column of ``W_{h+1}``), the same ratio per
                           layer, pruned by TP's ``DependencyGraph``
tp-isotropic    isotropic  the neurons TP's L2 importance selects, removed from the isotropic
                           model with no o/psi correction (TP cannot trace it: see below)
magnitude       standard   textbook: neurons ranked by outgoing-weight norm ``|W_{h+1}[:, j]|``
svd-standard    standard   truncated SVD of each map: ``Linear(n, r, bias=False), Linear(r, m)``
svd-isotropic   isotropic  the same on the isotropic model (each factored map an
                           :class:`~isoproof.NGCLinear` with its own ``P``: the same two matmuls)
ngc             isotropic  :func:`isoproof.ngc_compress`: map ``0`` alone and the hidden maps
                           ``1 .. L-2`` in one group sharing input states (``"consecutive"``)
ngc-none        isotropic  NGC with every map its own group (activation-aware SVD)
==============  =========  ==================================================================

Matching a budget (:func:`search`). Every method has integer knobs: the hidden widths (neuron
methods) or one rank per map or group (``dense`` allowed; only ranks that store fewer numbers
than the dense map). Every knob setting whose stored count lies within :data:`TOLERANCE` (2%) of
the target is enumerated, and the method's own criterion picks one (ties: more parameters):

* isoproof minimises the summed score ``(g_h sigma_i A_h)^2`` of the removed neurons, each
  layer losing its smallest-sigma neurons first (``sigma_i A_h`` bounds the removed
  pre-activation, :mod:`isoproof.ops.neurodegeneration`, with ``A_h`` the RMS norm of the
  layer's input
  on the calibration batch; ``g_h``, the layer's mean gain, carries it into the layer's output);
* Torch-Pruning and magnitude pruning keep the same fraction of every hidden layer (TP's
  default, ``global_pruning=False``: the widths whose kept fractions are closest to equal),
  each layer losing its least important neurons (TP's ``MagnitudeImportance(p=2)``; the
  outgoing norm). Global ranking, checked on one seed while building this benchmark, was
  worse in most cells (it narrows one layer to a bottleneck);
* truncated SVD minimises the summed relative spectral energy ``sum_{i>r} s_i^2 / sum s_i^2``
  discarded per map;
* NGC keeps the same fraction of every group of maps ``0 .. L-2`` (its rule
  ``r = round(rho n S / (n + S))``); the output map is factored only when nothing else lands
  within the tolerance (tiny models).

At 100% every method is the dense model itself.

isoproof's order. Layers are narrowed first to last, re-planning after each: narrowing layer
``h - 1`` to ``w`` neurons leaves ``W_h`` with rank ``<= w``, so ``n_h - w`` neurons of layer ``h``
get ``sigma = 0`` and :func:`remove_dead` takes them out exactly (the planner models this:
``coupled=True`` in :func:`plan_widths`). Pruning and sparsification commute (both are defined
in the singular basis), so sparsify runs last; it never densifies anything.

Torch-Pruning and the isotropic MLP: ``tp.DependencyGraph`` treats the layer norm as elementwise
ops, so it ties every hidden layer *and the output classes* into one pruning group (and would
prune ``o``); pruning that group deletes classes. The ``tp-isotropic`` method therefore takes TP's
importance from :func:`isoproof.standard.paired_standard` (same weights, tanh instead of the
isotropic activation: exactly TP's elementwise view) and removes those neurons with a plain change
of basis (a selection matrix: rows of ``W_h``, ``b_h`` and ``psi_{h-1}``, columns of ``W_{h+1}``;
``o`` and ``psi_h`` untouched), which is what an elementwise tool does.

Example (a tiny untrained model)::

    >>> model = ip.IsotropicMLP([6, 8, 8, 8, 3])
    >>> x = torch.randn(64, 6)
    >>> small = compress("isoproof", model, 0.5, x)
    >>> abs(small.params / ip.count_parameters(model) / 0.5 - 1) <= TOLERANCE
    True
"""

from __future__ import annotations

import copy
import itertools
import math
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import isoproof as ip
from isoproof.data import Dataset
from isoproof.ngc import NGCLinear
from isoproof.ops._surgery import Surgery, output_change
from isoproof.standard import linear_layers, paired_standard, standard_mlp, widths_of
from isoproof.train import evaluate, fit

__all__ = [
    "BUDGETS",
    "ISSUE_BUDGETS",
    "METHODS",
    "TOLERANCE",
    "Compressed",
    "Group",
    "Infeasible",
    "Method",
    "Settings",
    "compress",
    "measure_latency",
    "plan_ranks",
    "plan_widths",
    "remove_dead",
    "run",
    "search",
    "summarise",
]

ISSUE_BUDGETS: tuple[float, ...] = (1.0, 0.75, 0.5, 0.35, 0.25)
BUDGETS: tuple[float, ...] = (*ISSUE_BUDGETS, 0.1, 0.05, 0.03)  # further: where methods break
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


def _count_of(model: ip.IsotropicMLP, widths: Sequence[int], sparse: bool) -> int:
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


def _factor_groups(model: nn.Module, grouped: bool) -> tuple[list[Group], int]:
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


def _rank_config(groups: Sequence[Group], ranks: Sequence[int | None]) -> list[list[Any]]:
    return [[list(g.maps), "dense" if r is None else r] for g, r in zip(groups, ranks, strict=True)]


class Infeasible(ip.IsoproofError):
    """No knob setting of a method lands within the tolerance of the budget."""


def _no_plan(target: float) -> Infeasible:
    return Infeasible(f"expected a setting within 2% of {target:.0f} parameters, got none")


# ---------------------------------------------------------------------------- isoproof
def remove_dead(
    model: ip.IsotropicMLP, layer: int, limit: int, probe: torch.Tensor | None = None
) -> ip.Receipt | None:
    """Remove up to ``limit`` neurons of hidden layer ``layer`` that carry nothing, exactly:
    :func:`isoproof.prune_dead` (``sigma = 0`` neurons, their psi gathered into one kept
    neuron first). Returns the receipt, or ``None`` if nothing was removed.

    Example::

        >>> model = ip.IsotropicMLP([3, 8, 8, 2], dtype=torch.float64)
        >>> with torch.no_grad():
        ...     _ = model.psi[0].normal_()
        >>> x = torch.randn(16, 3, dtype=torch.float64)
        >>> _ = remove_dead(model, 0, 8, x)  # 8 - 3 dead neurons in layer 0
        >>> receipt = remove_dead(model, 1, 8, x)  # 8 - 3 dead, one keeps psi*
        >>> model.widths, receipt.bound < 1e-9, receipt.max_abs_change < 1e-12
        ([3, 3, 4, 2], True, True)
    """
    receipt = ip.prune_dead(model, layer, limit=limit, probe=probe)
    return None if receipt.widths_after == receipt.widths_before else receipt


def _rms(t: torch.Tensor) -> float:
    return float(t.detach().to(torch.float64).pow(2).sum(-1).mean().sqrt())


def _iso_scores(model: ip.IsotropicMLP, x: torch.Tensor, first: int) -> list[np.ndarray | None]:
    """``(g_h sigma_i A_h)^2`` per neuron of hidden layers ``h >= first`` (``None`` before):
    ``sigma_i A_h`` bounds the removed pre-activation (:mod:`isoproof.ops.neurodegeneration`;
    ``A_h`` the
    RMS norm of the layer's input on ``x``) and the layer's mean gain ``g_h`` scales it into the
    layer's output ``a_h = g_h z_h`` (first order)."""
    states = model.hidden_states(x)
    inputs = [x] + [a for a, _ in states]
    out: list[np.ndarray | None] = []
    for h in range(model.num_layers - 1):
        if h < first:
            out.append(None)
            continue
        scale = _rms(inputs[h]) * float(states[h][1].mean())
        out.append((ip.singular_values(model, h) * scale).pow(2).numpy())
    return out


def _isoproof(sparsify: bool) -> Callable:
    def fn(model: ip.IsotropicMLP, target: float, x: torch.Tensor):
        forms = [True, False] if sparsify else [False]
        new, receipts, damage, sparse = copy.deepcopy(model), [], 0.0, False
        for h in range(new.num_layers - 1):  # first to last, re-planning after each layer
            scores = _iso_scores(new, x, h)
            plans = [
                (plan_widths(new, scores, target, sparsified=f, coupled=True), f) for f in forms
            ]
            feasible = [(p, f) for p, f in plans if p is not None]
            if not feasible:
                raise _no_plan(target)
            # sparsify is exact and free: the form whose plan removes the least wins (ties:
            # sparsified); the first layer's choice holds for the rest
            (widths, cost), sparse = min(feasible, key=lambda pf: (pf[0][1], not pf[1]))
            forms, damage = [sparse], damage if h else cost
            n = new.widths[h + 1] - widths[h]
            dead = remove_dead(new, h, n, x) if n > 0 else None
            if dead is not None:
                receipts.append(dead)
                n -= dead.widths_before[h + 1] - dead.widths_after[h + 1]
            if n > 0:
                receipts.append(ip.prune(new, h, n, probe=x))
        if sparse:
            receipts.append(ip.sparsify(new, probe=x))  # exact (proofs/diagonalisation.py)
        config = {"widths": new.widths, "sparsified": sparse, "planned_damage": damage}
        return new, config, receipts

    return fn


# ---------------------------------------------------------------------------- neuron peers
def _tp_scores(std: nn.Sequential, example: torch.Tensor) -> tuple[Any, list[np.ndarray]]:
    """Torch-Pruning's ``MagnitudeImportance(p=2)`` of every hidden neuron of ``std``."""
    import torch_pruning as tp

    graph = tp.DependencyGraph().build_dependency(std, example_inputs=example[:2])
    importance = tp.importance.MagnitudeImportance(p=2)
    scores = []
    for lin in linear_layers(std)[:-1]:
        group = graph.get_pruning_group(
            lin, tp.prune_linear_out_channels, idxs=list(range(lin.out_features))
        )
        scores.append(importance(group).detach().to(torch.float64).numpy())
    return graph, scores


def _tp_prune(std: nn.Sequential, graph: Any, drop: list[list[int]]) -> None:
    """Remove neurons ``drop[h]`` of every hidden layer with Torch-Pruning's own surgery."""
    import torch_pruning as tp

    for lin, idxs in zip(linear_layers(std)[:-1], drop, strict=True):
        if idxs:
            group = graph.get_pruning_group(lin, tp.prune_linear_out_channels, idxs=idxs)
            if not graph.check_pruning_group(group):
                raise ip.IsoproofError(f"expected a prunable group, got {group}")
            group.prune()


def _lowest(scores: Sequence[np.ndarray], widths: Sequence[int]) -> list[list[int]]:
    """Per layer, the indices of the ``n_h - w_h`` lowest scores (the neurons to remove)."""
    out = []
    for s, w in zip(scores, widths, strict=True):
        order = np.argsort(np.asarray(s), kind="stable")
        out.append(sorted(int(i) for i in order[: len(s) - w]))
    return out


def _neuron_plan(model: nn.Module, scores: list[np.ndarray], target: float) -> tuple[int, ...]:
    plan = plan_widths(model, scores, target, uniform=True)
    if plan is None:
        raise _no_plan(target)
    return plan[0]


def _tp_standard(model: nn.Sequential, target: float, x: torch.Tensor):
    new = copy.deepcopy(model)
    graph, scores = _tp_scores(new, x)
    _tp_prune(new, graph, _lowest(scores, _neuron_plan(new, scores, target)))
    return new, {"widths": widths_of(new)}, []


def _magnitude(model: nn.Sequential, target: float, x: torch.Tensor):
    new = copy.deepcopy(model)
    scores = []
    for nxt in linear_layers(new)[1:]:
        norms = nxt.weight.detach().to(torch.float64).norm(dim=0)
        scores.append((norms / norms.mean()).numpy())  # per-layer mean normalisation
    graph, _ = _tp_scores(new, x)  # Torch-Pruning's surgery, the textbook importance
    _tp_prune(new, graph, _lowest(scores, _neuron_plan(new, scores, target)))
    return new, {"widths": widths_of(new)}, []


def _tp_isotropic(model: ip.IsotropicMLP, target: float, x: torch.Tensor):
    # TP cannot trace the isotropic norm (it groups every layer with the output classes), so
    # take its importance from the elementwise twin and remove the same neurons, uncorrected.
    _, scores = _tp_scores(paired_standard(model, strict=False), x)
    drops = _lowest(scores, _neuron_plan(model, scores, target))
    new, receipts = copy.deepcopy(model), []
    for h, drop in enumerate(drops):
        if drop:
            keep = [i for i in range(new.widths[h + 1]) if i not in set(drop)]
            s = Surgery(new)
            s.change_basis(h, torch.eye(new.widths[h + 1], dtype=torch.float64)[keep])
            receipts.append(s.commit("magnitude_prune", h, bound=math.inf, probe=x))
    return new, {"widths": new.widths}, receipts


# ---------------------------------------------------------------------------- factorisations
def _svd(w: torch.Tensor, r: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(P [n, r], B [m, r])``, ``B P^T`` the rank-``r`` truncation of ``w`` (balanced split)."""
    U, S, Vh = torch.linalg.svd(w.detach().to(torch.float64), full_matrices=False)
    root = S[:r].sqrt()
    return Vh[:r].T * root, U[:, :r] * root


def _energy(w: torch.Tensor) -> np.ndarray:
    """``tail[r]``: the fraction of ``|w|_F^2`` a rank-``r`` truncation discards."""
    s2 = torch.linalg.svdvals(w.detach().to(torch.float64)).pow(2).numpy()
    return np.concatenate([np.cumsum(s2[::-1])[::-1], [0.0]]) / s2.sum()


def _svd_plan(model: nn.Module, target: float) -> tuple[list[Group], tuple[int | None, ...]]:
    """A rank per map minimising the summed discarded relative energy."""
    groups, fixed = _factor_groups(model, grouped=False)
    lins = linear_layers(model)
    tails = []
    for g in groups:
        tail = _energy(lins[g.maps[0]].weight)
        tails.append(np.array([0.0 if r is None else tail[r] for r in g.ranks()]))

    def cost(_: list[np.ndarray], k: list[np.ndarray]) -> np.ndarray:
        return sum((t[ki] for t, ki in zip(tails, k, strict=True)), np.float64(0))

    ranks = plan_ranks(groups, fixed, target, cost)
    if ranks is None:
        raise _no_plan(target)
    return groups, ranks


def _svd_standard(model: nn.Sequential, target: float, x: torch.Tensor):
    groups, ranks = _svd_plan(model, target)
    rank_of = {g.maps[0]: r for g, r in zip(groups, ranks, strict=True)}
    layers: list[nn.Module] = []
    index = 0
    for module in model:
        r = rank_of.get(index) if isinstance(module, nn.Linear) else None
        index += isinstance(module, nn.Linear)
        if r is None:
            layers.append(copy.deepcopy(module))
            continue
        P, B = _svd(module.weight, r)  # Linear(n, r, bias=False) then Linear(r, m)
        dtype = module.weight.dtype
        first = nn.Linear(module.in_features, r, bias=False, dtype=dtype)
        second = nn.Linear(r, module.out_features, dtype=dtype)
        with torch.no_grad():
            first.weight.copy_(P.T)
            second.weight.copy_(B)
            second.bias.copy_(module.bias)
        layers += [first, second]
    return nn.Sequential(*layers), {"ranks": _rank_config(groups, ranks)}, []


def _svd_isotropic(model: ip.IsotropicMLP, target: float, x: torch.Tensor):
    groups, ranks = _svd_plan(model, target)
    new = copy.deepcopy(model)
    for g, r in zip(groups, ranks, strict=True):
        if r is not None:
            lin = new.linears[g.maps[0]]
            P, B = _svd(lin.weight, r)
            dtype = lin.weight.dtype
            new.linears[g.maps[0]] = NGCLinear(nn.Parameter(P.to(dtype)), B.to(dtype), lin.bias)
    return new, {"ranks": _rank_config(groups, ranks)}, []


def _ngc_cost(fracs: list[np.ndarray], _: list[np.ndarray]) -> np.ndarray:
    """NGC's rule: the same kept fraction for every group of maps ``0 .. L-2`` (the cost is the
    spread of their fractions), plus the fraction removed from the output map, which is factored
    only when nothing else lands within the tolerance (tiny models)."""
    inner = np.broadcast_arrays(*fracs[:-1])
    return np.maximum.reduce(inner) - np.minimum.reduce(inner) + (1 - fracs[-1])


def _ngc(grouped: bool) -> Callable:
    def fn(model: ip.IsotropicMLP, target: float, x: torch.Tensor):
        groups, fixed = _factor_groups(model, grouped)
        ranks = plan_ranks(groups, fixed, target, _ngc_cost)
        if ranks is None:
            raise _no_plan(target)
        new, changes = model, []
        # one call per group, in map order: later groups calibrate on the compressed upstream
        for g, r in zip(groups, ranks, strict=True):
            if r is not None:
                new, report = ip.ngc_compress(
                    new, calibration=x, groups=[list(g.maps)], rank=r, dense_factor=None
                )
                changes.append(report.output_change)
        new = copy.deepcopy(new) if new is model else new
        return new, {"ranks": _rank_config(groups, ranks), "relative_output_change": changes}, []

    return fn


# ---------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class Method:
    """A compression method: ``fn(model, target, calibration) -> (model, config, receipts)``."""

    name: str
    family: str  # "isotropic" | "standard": the model it compresses
    label: str
    fn: Callable[[Any, float, torch.Tensor], tuple[nn.Module, dict[str, Any], list]]


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("isoproof", "isotropic", "isoproof prune + sparsify", _isoproof(True)),
        Method("isoproof-prune", "isotropic", "isoproof prune only", _isoproof(False)),
        Method("tp-isotropic", "isotropic", "TP-L2 neurons, no o/psi fix (iso)", _tp_isotropic),
        Method("svd-isotropic", "isotropic", "truncated SVD (iso)", _svd_isotropic),
        Method("ngc", "isotropic", "NGC consecutive (iso)", _ngc(True)),
        Method("ngc-none", "isotropic", "NGC per map = act.-aware SVD (iso)", _ngc(False)),
        Method("tp-standard", "standard", "Torch-Pruning L2 (std)", _tp_standard),
        Method("magnitude", "standard", "outgoing-norm magnitude (std)", _magnitude),
        Method("svd-standard", "standard", "truncated SVD (std)", _svd_standard),
    )
}


@dataclass
class Compressed:
    """A compressed copy: the model, its stored count, the chosen knobs, and what it took."""

    model: nn.Module
    params: int
    config: dict[str, Any]
    receipts: list[ip.Receipt] = field(default_factory=list)
    seconds: float = 0.0


def compress(
    method: str | Method, model: nn.Module, fraction: float, calibration: torch.Tensor
) -> Compressed:
    """Compress a copy of ``model`` to ``fraction`` of its stored parameters (within
    :data:`TOLERANCE`); ``model`` is not modified. At ``fraction == 1`` the copy is the dense
    model itself. ``calibration``: training inputs (isoproof's scores, NGC's Grams, probes)."""
    m = METHODS[method] if isinstance(method, str) else method
    want = ip.IsotropicMLP if m.family == "isotropic" else nn.Sequential
    if not isinstance(model, want):
        raise ip.IsoproofError(
            f"expected a {want.__name__} for method {m.name!r}, got {type(model).__name__}"
        )
    if not (isinstance(fraction, float | int) and 0 < fraction <= 1):
        raise ip.IsoproofError(f"expected a budget fraction in (0, 1], got {fraction!r}")
    t0 = time.perf_counter()
    if fraction == 1:
        new, config, receipts = copy.deepcopy(model), {"dense": True}, []
    else:
        new, config, receipts = m.fn(model, fraction * ip.count_parameters(model), calibration)
    params = ip.count_parameters(new)
    if "sparsified" in config:  # the planner's count formula must agree with the real count
        formula = _count_of(model, config["widths"], config["sparsified"])
        if formula != params:
            raise RuntimeError(f"{m.name}: count formula gives {formula}, model stores {params}")
    return Compressed(new, params, config, receipts, time.perf_counter() - t0)


# ---------------------------------------------------------------------------- the run
@dataclass(frozen=True)
class Settings:
    """What :func:`run` trains and compresses (defaults: the full benchmark)."""

    hidden: tuple[int, ...] = (256, 256, 256)
    hidden_for: dict[str, tuple[int, ...]] = field(  # per data set name, overrides ``hidden``
        default_factory=lambda: {"digits-narrow": (48, 48, 48)}
    )
    seeds: tuple[int, ...] = (0, 1, 2)
    epochs: dict[str, int] = field(
        default_factory=lambda: {"digits": 20, "mnist1d": 40, "digits-narrow": 20}
    )
    lr: float = 1e-3
    batch_size: int = 48
    finetune_epochs: int = 2
    finetune_lr: float = 3e-4
    budgets: tuple[float, ...] = BUDGETS
    methods: tuple[str, ...] = tuple(METHODS)
    calibration_rows: int = 1024
    keep: tuple[str, int] | None = ("digits", 0)  # (data, seed) whose models run() returns


def _train(family: str, widths: list[int], data: Dataset, seed: int, s: Settings) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    if family == "isotropic":
        model: nn.Module = ip.IsotropicMLP(widths, generator=g)
    else:
        model = standard_mlp(widths, "tanh", generator=g)
    epochs = s.epochs[data.name]
    fit(model, data, epochs=epochs, lr=s.lr, batch_size=s.batch_size, seed=seed, verbose=False)
    return model


def _finetune(model: nn.Module, data: Dataset, seed: int, s: Settings) -> float:
    tuned = copy.deepcopy(model)
    fit(
        tuned,
        data,
        epochs=s.finetune_epochs,
        lr=s.finetune_lr,
        batch_size=s.batch_size,
        seed=seed + 1000,
        verbose=False,
    )
    return 100.0 * evaluate(tuned, data)["accuracy"]


def run(
    datasets: Sequence[Dataset], settings: Settings | None = None, *, log: Callable = print
) -> dict[str, Any]:
    """Train both families on every data set and seed, compress with every method at every
    budget, evaluate without and with fine-tune.

    Returns ``{"rows", "kept", "seconds"}``: one row per (data, seed, method, budget), and
    ``kept[(method, budget)]`` the compressed models of ``settings.keep`` (the dense ones under
    ``("dense-isotropic", 1.0)`` and ``("dense-standard", 1.0)``).
    """
    s = settings or Settings()
    rows: list[dict[str, Any]] = []
    kept: dict[tuple[str, float], nn.Module] = {}
    start = time.perf_counter()
    for data in datasets:
        widths = [data.n_features, *s.hidden_for.get(data.name, s.hidden), data.n_classes]
        calib = data.x_train[: s.calibration_rows]
        for seed in s.seeds:
            keep = s.keep == (data.name, seed)
            dense: dict[str, dict[str, Any]] = {}
            for family in ("isotropic", "standard"):
                t0 = time.perf_counter()
                model = _train(family, widths, data, seed, s)
                model.eval()
                dense[family] = {
                    "model": model,
                    "accuracy": 100.0 * evaluate(model, data)["accuracy"],
                    "finetuned": _finetune(model, data, seed, s),
                    "params": ip.count_parameters(model),
                }
                with torch.no_grad():
                    dense[family]["logits"] = model(data.x_test)
                log(
                    f"  {data.name} seed {seed} {family}: {dense[family]['accuracy']:.1f}% "
                    f"({time.perf_counter() - t0:.0f} s)"
                )
                if keep:
                    kept[(f"dense-{family}", 1.0)] = model
            for name in s.methods:
                t0 = time.perf_counter()
                for budget in s.budgets:
                    try:
                        row = _one(METHODS[name], dense, data, seed, budget, calib, s, kept, keep)
                    except Infeasible as e:  # e.g. rank-1 factors above a tiny model's budget
                        log(f"  {data.name} seed {seed} {name} {budget:.0%}: skipped, {e}")
                        continue
                    rows.append(row)
                shown = ", ".join(
                    f"{r['budget']:.0%} {r['accuracy']:.1f}/{r['accuracy_finetuned']:.1f}"
                    for r in rows
                    if (r["data"], r["seed"], r["method"]) == (data.name, seed, name)
                )
                took = time.perf_counter() - t0
                log(f"  {data.name} seed {seed} {name:<14} {shown} ({took:.0f} s)")
    return {"rows": rows, "kept": kept, "seconds": time.perf_counter() - start}


def _one(
    method: Method,
    dense: dict[str, dict[str, Any]],
    data: Dataset,
    seed: int,
    budget: float,
    calib: torch.Tensor,
    s: Settings,
    kept: dict[tuple[str, float], nn.Module],
    keep: bool,
) -> dict[str, Any]:
    ref = dense[method.family]
    out = compress(method, ref["model"], budget, calib)
    out.model.eval()
    acc = 100.0 * evaluate(out.model, data)["accuracy"]
    # at 100% every method is the dense model: its fine-tune is the family's dense fine-tune
    tuned = ref["finetuned"] if budget == 1 else _finetune(out.model, data, seed, s)
    with torch.no_grad():
        change = output_change(ref["logits"], out.model(data.x_test))
    if keep and budget < 1:
        kept[(method.name, budget)] = out.model
    return {
        "data": data.name,
        "widths": widths_of(ref["model"]),
        "seed": seed,
        "method": method.name,
        "family": method.family,
        "budget": budget,
        "dense_params": ref["params"],
        "params": out.params,
        "fraction": out.params / ref["params"],
        "match": out.params / (budget * ref["params"]),
        "accuracy": acc,
        "accuracy_finetuned": tuned,
        "dense_accuracy": ref["accuracy"],
        "dense_accuracy_finetuned": ref["finetuned"],
        "max_abs_logit_change": change,
        "compress_seconds": out.seconds,
        "config": out.config,
        "receipts": [_receipt(r) for r in out.receipts],
    }


def _receipt(r: ip.Receipt) -> dict[str, Any]:
    return {
        "op": r.op,
        "layer": r.layer,
        "widths_after": list(r.widths_after),
        "params_after": r.params_after,
        "bound": r.bound if math.isfinite(r.bound) else "inf",
        "max_abs_change": r.max_abs_change,
    }


# ---------------------------------------------------------------------------- summary
def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarise(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and spread (sample std) over seeds per (data, method, budget); ``loss`` is the
    accuracy lost against the dense model of the same family (percentage points)."""
    keys = list(dict.fromkeys((r["data"], r["method"], r["budget"]) for r in rows))
    out = []
    for key in keys:
        sub = [r for r in rows if (r["data"], r["method"], r["budget"]) == key]
        acc, acc_sd = _mean_std([r["accuracy"] for r in sub])
        ft, ft_sd = _mean_std([r["accuracy_finetuned"] for r in sub])
        out.append(
            {
                "data": key[0],
                "method": key[1],
                "family": sub[0]["family"],
                "budget": key[2],
                "seeds": len(sub),
                "fraction": statistics.fmean(r["fraction"] for r in sub),
                "match_min": min(r["match"] for r in sub),
                "match_max": max(r["match"] for r in sub),
                "accuracy": acc,
                "accuracy_std": acc_sd,
                "accuracy_finetuned": ft,
                "accuracy_finetuned_std": ft_sd,
                "dense_accuracy": statistics.fmean(r["dense_accuracy"] for r in sub),
                "loss": statistics.fmean(r["dense_accuracy"] - r["accuracy"] for r in sub),
                "loss_finetuned": statistics.fmean(
                    r["dense_accuracy_finetuned"] - r["accuracy_finetuned"] for r in sub
                ),
                "max_abs_logit_change": max(r["max_abs_logit_change"] for r in sub),
            }
        )
    return out


# ---------------------------------------------------------------------------- latency
def measure_latency(
    models: dict[str, nn.Module],
    *,
    runs: int = 200,
    batches: Sequence[int] = (1, 64),
    log: Callable = print,
) -> dict[str, dict[str, Any]]:
    """ONNX Runtime CPU latency (1 intra-op thread) of every model, exported with
    :func:`exporters.export_onnx` and checked with :func:`exporters.verify_onnx` first.

    Median seconds per call over ``runs`` calls after a warm-up, interleaved across models
    (``benchmarks.bench_latency``'s timing), per batch size. All models must share an input
    width. Returns ``{name: {"verified", "max_abs_error", "file_bytes", "batch<b>": seconds}}``.
    """
    from isoproof.exporters import export_onnx, verify_onnx
    from isoproof.exporters.runtime import interleaved_medians, ort_session

    widths = {widths_of(m)[0] for m in models.values()}
    if len(widths) != 1:
        raise ip.IsoproofError(f"expected models of one input width, got widths {sorted(widths)}")
    out: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="isoproof-compression-") as tmp:
        sessions = {}
        for name, model in models.items():
            path = export_onnx(model, Path(tmp) / f"{len(sessions)}.onnx")
            report = verify_onnx(path, model)
            out[name] = {
                "verified": bool(report.ok),
                "max_abs_error": float(report.max_abs),
                "file_bytes": path.stat().st_size,
            }
            sessions[name] = ort_session(path, threads=1)
        rng = np.random.default_rng(0)
        x_all = rng.standard_normal((max(batches), widths.pop())).astype(np.float32)
        for batch in batches:
            x = x_all[:batch]
            calls = {n: (lambda s=s, x=x: s.run(None, {"input": x})) for n, s in sessions.items()}
            for name, seconds in interleaved_medians(calls, runs).items():
                out[name][f"batch{batch}"] = seconds
            log(f"  latency batch {batch}: done ({len(calls)} models, {runs} runs each)")
    return out
