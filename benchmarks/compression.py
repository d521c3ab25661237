"""Compression at matched stored-parameter budgets: isotropic neurodegeneration vs its peers.

Three steps, one module each: match the budget (:mod:`benchmarks._budget`), compress with each
method (:mod:`benchmarks._methods`, the library's public API only), and train / evaluate /
summarise (this module, which re-exports the names of the other two).

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
isoproof        isotropic  :func:`isoproof.prune_dead` + :func:`isoproof.prune` of the
                           smallest-sigma neurons (o and psi corrections), then
                           :func:`isoproof.sparsify` when the sparsified plan removes less
                           (it is exact and free)
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

Matching a budget (:func:`benchmarks._budget.search`). Every method has integer knobs: the
hidden widths (neuron methods) or one rank per map or group (``dense`` allowed; only ranks that
store fewer numbers than the dense map). Every knob setting whose stored count lies within
:data:`TOLERANCE` (2%) of the target is enumerated, and the method's own criterion picks one
(ties: more parameters):

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
get ``sigma = 0`` and :func:`isoproof.prune_dead` takes them out exactly (the planner models this:
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
from isoproof.standard import standard_mlp, widths_of
from isoproof.strict_json import jsonable
from isoproof.train import evaluate, fit

from ._budget import TOLERANCE, Group, Infeasible, plan_ranks, plan_widths, search
from ._methods import METHODS, Compressed, Method, compress

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
    "run",
    "search",
    "summarise",
]

ISSUE_BUDGETS: tuple[float, ...] = (1.0, 0.75, 0.5, 0.35, 0.25)
BUDGETS: tuple[float, ...] = (*ISSUE_BUDGETS, 0.1, 0.05, 0.03)  # further: where methods break


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
    weight_decay: float = 1e-3
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
    recipe = {"lr": s.lr, "weight_decay": s.weight_decay, "batch_size": s.batch_size}
    fit(model, data, epochs=epochs, seed=seed, verbose=False, **recipe)
    return model


def _finetune(model: nn.Module, data: Dataset, seed: int, s: Settings) -> float:
    tuned = copy.deepcopy(model)
    fit(
        tuned,
        data,
        epochs=s.finetune_epochs,
        lr=s.finetune_lr,
        weight_decay=s.weight_decay,
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
    seconds = time.perf_counter() - start
    return {"rows": rows, "kept": kept, "seconds": seconds, "threads": torch.get_num_threads()}


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
        change = float((out.model(data.x_test) - ref["logits"]).abs().max())
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
        "receipts": [jsonable(r.to_dict()) for r in out.receipts],
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
