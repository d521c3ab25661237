"""CNN track of the compression benchmark: channel pruning at matched stored-parameter budgets.

Models (digits as ``[1, 8, 8]`` images): an :class:`isoproof.IsotropicConvNet` and its elementwise
tanh twin with identical initial kernels (:func:`isoproof.standard.paired_standard`), trained with
the same data order and optimiser. Each method keeps at most ``budget`` x the dense model's stored
numbers (:func:`isoproof.count_parameters`), for every budget in ``BUDGETS``:

* ``isoproof``: :func:`isoproof.prune` on every channel space (one SVD per layer, the
  smallest-sigma channels go; ``o`` and the psi kernels absorb the removed channels), the same
  fraction of every conv layer, no fine-tune;
* ``isoproof + ft``: the same, then ``finetune_epochs`` of training (the same fine-tune as below);
* ``tp-magnitude``: Torch-Pruning's ``MagnitudePruner`` (``MagnitudeImportance(p=2)``, its default
  per-layer ratio; the output layer ignored) on the tanh CNN, ratio searched to meet the budget;
* ``magnitude``: filter pruning by the L1 norm of each output channel's kernel (Li et al. 2017)
  with the same kept fraction per layer, removed by Torch-Pruning's dependency graph.

Every pruned model is reported without and with the same fine-tune, its test accuracy, and its
ONNX Runtime CPU latency (one thread, batch 1 and 64; exported and verified first).

Example (tiny, untrained)::

    >>> net = ip.IsotropicConvNet([1, 8, 8], [{"conv": 6, "padding": 1}, {"conv": 6}], 10)
    >>> small = prune_isoproof(net, 0.5)
    >>> ip.count_parameters(small) <= 0.5 * ip.count_parameters(net)
    True
"""

from __future__ import annotations

import copy
import math
import statistics
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import isoproof as ip
from isoproof.data import Dataset, load_digits
from isoproof.standard import paired_standard
from isoproof.train import fit

from ._models import tp_magnitude_pruner

__all__ = ["BUDGETS", "METHODS", "SETTINGS", "prune_isoproof", "prune_magnitude", "prune_tp", "run"]

BUDGETS: tuple[float, ...] = (0.75, 0.5, 0.35, 0.25, 0.10)
SETTINGS: dict[str, Any] = {
    "layers": [{"conv": 16, "k": 3, "padding": 1}, {"conv": 16, "k": 3, "padding": 1, "pool": 2}],
    "epochs": 8,
    "finetune_epochs": 2,
    "seeds": [0, 1, 2],
    "latency_runs": 100,
}


_STEPS = np.linspace(1.0, 0.02, 99)  # kept fractions tried, largest first (step 0.01)


def _kept(widths: Sequence[int], f: float) -> list[int]:
    return [max(1, math.floor(f * w + 1e-9)) for w in widths]


def _largest_fitting(make: Callable[[float], nn.Module], limit: float) -> nn.Module:
    """``make(f)`` for the largest ``f`` in :data:`_STEPS` whose stored count is ``<= limit``
    (bisection: the count falls as ``f`` falls)."""
    lo, hi, best = 0, len(_STEPS) - 1, None
    while lo <= hi:
        mid = (lo + hi) // 2
        model = make(float(_STEPS[mid]))
        if ip.count_parameters(model) <= limit:
            best, hi = model, mid - 1
        else:
            lo = mid + 1
    if best is None:
        raise ip.IsoproofError(f"expected a feasible budget, got a limit of {limit:.0f} numbers")
    return best


def prune_isoproof(model: ip.IsotropicConvNet, budget: float) -> ip.IsotropicConvNet:
    """A copy of ``model`` with the same fraction of every channel space kept (``isoproof.prune``:
    smallest sigma first), the largest fraction whose stored count fits ``budget``."""
    channels = model.widths[1 : 1 + model.num_conv]

    def make(f: float) -> nn.Module:
        new = copy.deepcopy(model)
        for h, keep in enumerate(_kept(channels, f)):
            if keep < channels[h]:
                ip.prune(new, h, channels[h] - keep)
        return new

    return _largest_fitting(make, budget * ip.count_parameters(model))


def _convs(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, nn.Conv1d | nn.Conv2d)]


def prune_tp(model: nn.Sequential, budget: float, example: torch.Tensor) -> nn.Sequential:
    """Torch-Pruning's ``MagnitudePruner`` at the largest ratio (step 0.01) that fits ``budget``."""

    def make(f: float) -> nn.Module:
        new = copy.deepcopy(model)
        tp_magnitude_pruner(new, example, 1.0 - f).step()
        return new

    return _largest_fitting(make, budget * ip.count_parameters(model))


def prune_magnitude(model: nn.Sequential, budget: float, example: torch.Tensor) -> nn.Sequential:
    """L1 filter pruning, the same kept fraction per conv layer, via Torch-Pruning's graph."""
    import torch_pruning as tp

    channels = [c.out_channels for c in _convs(model)]

    def make(f: float) -> nn.Module:
        new = copy.deepcopy(model)
        graph = tp.DependencyGraph().build_dependency(new, example_inputs=example)
        for conv, keep in zip(_convs(new), _kept(channels, f), strict=True):
            scores = conv.weight.detach().abs().flatten(1).sum(1)
            drop = scores.argsort()[: conv.out_channels - keep].tolist()
            if drop:
                graph.get_pruning_group(conv, tp.prune_conv_out_channels, idxs=drop).prune()
        return new

    return _largest_fitting(make, budget * ip.count_parameters(model))


METHODS: dict[str, str] = {"isoproof": "iso", "tp-magnitude": "tanh", "magnitude": "tanh"}


def _accuracy(model: nn.Module, data: Dataset) -> float:
    with torch.no_grad():
        return 100.0 * float((model(data.x_test).argmax(1) == data.y_test).float().mean())


def run(cfg: dict[str, Any] = SETTINGS, *, data: Dataset | None = None,
        budgets: Sequence[float] = BUDGETS, log: Callable = print) -> dict[str, Any]:  # fmt: skip
    """Train, prune at every budget with every method, fine-tune, time; returns rows + summary."""
    data = data if data is not None else load_digits(conv=True)
    example = data.x_train[:2]
    rows: list[dict[str, Any]] = []
    latency: dict[str, Any] = {}
    files: dict[str, nn.Module] = {}  # the first seed's models, timed once at the end
    for seed in cfg["seeds"]:
        g = torch.Generator().manual_seed(seed)
        iso = ip.IsotropicConvNet(data.sample_shape, cfg["layers"], data.n_classes, generator=g)
        tanh = paired_standard(copy.deepcopy(iso))
        for model in (iso, tanh):
            fit(model, data, epochs=cfg["epochs"], seed=seed, verbose=False)
        base = {"iso": iso, "tanh": tanh}
        rows += [{"seed": seed, "method": f"dense ({k})", "budget": 1.0,
                  "params": ip.count_parameters(m), "accuracy": _accuracy(m, data),
                  "accuracy_ft": None} for k, m in base.items()]  # fmt: skip
        if seed == cfg["seeds"][0]:
            files.update({"dense isotropic": iso, "dense tanh": tanh})
        for budget in budgets:
            for method, family in METHODS.items():
                src = base[family]
                if method == "isoproof":
                    pruned = prune_isoproof(src, budget)
                elif method == "tp-magnitude":
                    pruned = prune_tp(src, budget, example)
                else:
                    pruned = prune_magnitude(src, budget, example)
                acc = _accuracy(pruned, data)
                tuned = copy.deepcopy(pruned)
                fit(tuned, data, epochs=cfg["finetune_epochs"], seed=seed, verbose=False)
                rows.append({"seed": seed, "method": method, "budget": budget,
                             "params": ip.count_parameters(pruned), "accuracy": acc,
                             "accuracy_ft": _accuracy(tuned, data),
                             "channels": [c.out_channels for c in _convs(pruned)]
                             or pruned.widths[1 : 1 + pruned.num_conv]})  # fmt: skip
                if seed == cfg["seeds"][0]:
                    files[f"{method} {budget:g}"] = pruned
                r = rows[-1]
                log(f"  seed {seed} {method} {budget:.0%}: {r['params']} params, "
                    f"acc {acc:.1f}% -> {r['accuracy_ft']:.1f}% after fine-tune")  # fmt: skip
    if cfg.get("latency_runs"):  # the first seed's files: latency does not depend on the seed
        latency = measure_latency(files, data.sample_shape, cfg["latency_runs"])
    return {"settings": {**cfg, "budgets": list(budgets)}, "rows": rows, "latency": latency,
            "summary": summarise(rows)}  # fmt: skip


def summarise(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean accuracy (no fine-tune / fine-tuned), its range over seeds and the mean stored numbers
    per method and budget."""
    out = []
    for key in dict.fromkeys((r["method"], r["budget"]) for r in rows):
        mine = [r for r in rows if (r["method"], r["budget"]) == key]
        ft = [r["accuracy_ft"] for r in mine if r["accuracy_ft"] is not None]
        out.append({"method": key[0], "budget": key[1],
                    "params": statistics.fmean(r["params"] for r in mine),
                    "accuracy": statistics.fmean(r["accuracy"] for r in mine),
                    "accuracy_ft": statistics.fmean(ft) if ft else None,
                    "accuracy_range": [min(r["accuracy"] for r in mine),
                                       max(r["accuracy"] for r in mine)],
                    "seeds": len(mine)})  # fmt: skip
    return out


def measure_latency(models: dict[str, nn.Module], sample: Sequence[int], runs: int,
                    batches: Sequence[int] = (1, 64)) -> dict[str, dict[str, Any]]:  # fmt: skip
    """Export + verify every model, then interleaved ORT medians (seconds) per batch size."""
    from isoproof.exporters import export_onnx, verify_onnx
    from isoproof.exporters.runtime import interleaved_medians, ort_session

    out: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="isoproof-cnn-") as tmp:
        sessions = {}
        for k, (name, model) in enumerate(models.items()):
            path = export_onnx(model, Path(tmp) / f"{k}.onnx", input_shape=list(sample))
            report = verify_onnx(path, model, raise_on_failure=False)
            out[name] = {"verified": report.ok, "max_abs_error": report.max_abs}
            sessions[name] = ort_session(path, threads=1)
        x_all = np.random.default_rng(0).standard_normal((max(batches), *sample)).astype("float32")
        for b in batches:
            calls = {n: (lambda s=s, x=x_all[:b]: s.run(None, {"input": x}))
                     for n, s in sessions.items()}  # fmt: skip
            for name, seconds in interleaved_medians(calls, runs).items():
                out[name][f"batch{b}"] = seconds
    return out
