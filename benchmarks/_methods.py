"""The compression methods (step 2 of :mod:`benchmarks.compression`): public API only.

Each method is ``fn(model, target, calibration) -> (model, config, receipts)``: it plans its
knobs with :mod:`benchmarks._budget` and compresses a copy of the model with the library's public
operations (:func:`isoproof.prune_dead`, :func:`isoproof.prune`, :func:`isoproof.sparsify`,
:func:`isoproof.ngc_compress`), Torch-Pruning, or plain tensor slicing / SVD.

The exact step of ``isoproof`` (:func:`isoproof.prune_dead` removes ``sigma = 0`` neurons, their
psi gathered into one kept neuron first)::

    >>> model = ip.IsotropicMLP([3, 8, 8, 2], dtype=torch.float64)
    >>> with torch.no_grad():
    ...     _ = model.psi[0].normal_()
    >>> x = torch.randn(16, 3, dtype=torch.float64)
    >>> _ = ip.prune_dead(model, 0, limit=8, probe=x)  # 8 - 3 dead neurons in layer 0
    >>> receipt = ip.prune_dead(model, 1, limit=8, probe=x)  # 8 - 3 dead, one keeps psi*
    >>> model.widths, receipt.bound < 1e-9, receipt.max_abs_change < 1e-12
    ([3, 3, 4, 2], True, True)
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

import isoproof as ip
from isoproof.standard import linear_layers, paired_standard, widths_of

from ._budget import (
    Group,
    Infeasible,
    count_of,
    factor_groups,
    no_plan,
    plan_ranks,
    plan_widths,
    rank_config,
)

__all__ = ["METHODS", "Compressed", "Infeasible", "Method", "compress", "select_neurons"]


# ---------------------------------------------------------------------------- isoproof
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
                raise no_plan(target)
            # sparsify is exact and free: the form whose plan removes the least wins (ties:
            # sparsified); the first layer's choice holds for the rest
            (widths, cost), sparse = min(feasible, key=lambda pf: (pf[0][1], not pf[1]))
            forms, damage = [sparse], damage if h else cost
            n = new.widths[h + 1] - widths[h]
            dead = ip.prune_dead(new, h, limit=n, probe=x) if n > 0 else None
            if dead is not None and dead.widths_after != dead.widths_before:
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
        raise no_plan(target)
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
    new = select_neurons(model, drops)
    with torch.no_grad():
        change = float((new(x) - model(x)).abs().max())
    receipt = ip.Receipt(
        "magnitude_prune",
        tuple(h for h, d in enumerate(drops) if d),
        tuple(model.widths),
        tuple(new.widths),
        ip.count_parameters(model),
        ip.count_parameters(new),
        bound=math.inf,  # no o/psi correction: nothing bounds the change
        max_abs_change=change,
    )
    return new, {"widths": new.widths}, [receipt]


def select_neurons(model: ip.IsotropicMLP, drops: Sequence[Sequence[int]]) -> ip.IsotropicMLP:
    """A copy of ``model`` without neurons ``drops[h]`` of each hidden layer ``h``, uncorrected:
    rows of ``W_h``, ``b_h`` and ``psi_{h-1}``, columns of ``W_{h+1}`` (``o`` and ``psi_h``
    untouched), which is what an elementwise tool does. Built with the public
    :meth:`~isoproof.IsotropicMLP.from_config` and ``load_state_dict``.

    Example::

        >>> m = ip.IsotropicMLP([3, 4, 4, 2])
        >>> small = select_neurons(m, [[0], [1, 2]])
        >>> kept = m.linears[1].weight[[0, 3]][:, 1:]  # rows: layer 1 keeps 0, 3; columns: 1-3
        >>> small.widths, bool(torch.equal(small.linears[1].weight, kept))
        ([3, 3, 2, 2], True)
    """
    keep = [list(range(model.widths[0]))]
    for h, drop in enumerate(drops):
        gone = set(drop)
        keep.append([i for i in range(model.widths[h + 1]) if i not in gone])
    keep.append(list(range(model.widths[-1])))
    new = ip.IsotropicMLP.from_config({**model.config(), "widths": [len(k) for k in keep]})
    state = {}
    for key, value in model.state_dict().items():
        part = key.split(".")
        if part[0] == "linears":
            i = int(part[1])
            value = value[keep[i + 1]]
            value = value[:, keep[i]] if part[2] == "weight" else value
        elif part[0] == "psi":
            value = value[keep[int(part[1]) + 2]]
        state[key] = value.clone()
    new.load_state_dict(state)
    return new.train(model.training)


# ---------------------------------------------------------------------------- factorisations
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
    groups, fixed = factor_groups(model, grouped=False)
    lins = linear_layers(model)
    tails = []
    for g in groups:
        tail = _energy(lins[g.maps[0]].weight)
        tails.append(np.array([0.0 if r is None else tail[r] for r in g.ranks()]))

    def cost(_: list[np.ndarray], k: list[np.ndarray]) -> np.ndarray:
        return sum((t[ki] for t, ki in zip(tails, k, strict=True)), np.float64(0))

    ranks = plan_ranks(groups, fixed, target, cost)
    if ranks is None:
        raise no_plan(target)
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
    return nn.Sequential(*layers), {"ranks": rank_config(groups, ranks)}, []


def _svd_isotropic(model: ip.IsotropicMLP, target: float, x: torch.Tensor):
    groups, ranks = _svd_plan(model, target)
    new = copy.deepcopy(model)
    for g, r in zip(groups, ranks, strict=True):
        if r is not None:
            lin = new.linears[g.maps[0]]
            P, B = _svd(lin.weight, r)
            dtype = lin.weight.dtype
            new.linears[g.maps[0]] = ip.NGCLinear(nn.Parameter(P.to(dtype)), B.to(dtype), lin.bias)
    return new, {"ranks": rank_config(groups, ranks)}, []


def _ngc_cost(fracs: list[np.ndarray], _: list[np.ndarray]) -> np.ndarray:
    """NGC's rule: the same kept fraction for every group of maps ``0 .. L-2`` (the cost is the
    spread of their fractions), plus the fraction removed from the output map, which is factored
    only when nothing else lands within the tolerance (tiny models)."""
    inner = np.broadcast_arrays(*fracs[:-1])
    return np.maximum.reduce(inner) - np.minimum.reduce(inner) + (1 - fracs[-1])


def _ngc(grouped: bool) -> Callable:
    def fn(model: ip.IsotropicMLP, target: float, x: torch.Tensor):
        groups, fixed = factor_groups(model, grouped)
        ranks = plan_ranks(groups, fixed, target, _ngc_cost)
        if ranks is None:
            raise no_plan(target)
        new, changes = model, []
        # one call per group, in map order: later groups calibrate on the compressed upstream
        for g, r in zip(groups, ranks, strict=True):
            if r is not None:
                new, report = ip.ngc_compress(
                    new, calibration=x, groups=[list(g.maps)], rank=r, dense_factor=None
                )
                changes.append(report.output_change)
        new = copy.deepcopy(new) if new is model else new
        return new, {"ranks": rank_config(groups, ranks), "relative_output_change": changes}, []

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
        formula = count_of(model, config["widths"], config["sparsified"])
        if formula != params:
            raise RuntimeError(f"{m.name}: count formula gives {formula}, model stores {params}")
    return Compressed(new, params, config, receipts, time.perf_counter() - t0)
