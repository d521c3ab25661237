"""Exp 6, standard vs isotropic tanh with paired initial weights, on digits and MNIST-1D.

Setup (``docs/method.md`` §7, Exp 6, at laptop scale): for each seed, one
:class:`~isoproof.IsotropicMLP` ``[in, 100, 100, 10]`` (trainable ``o``, psi with decay: the
paper's defaults) and a standard tanh MLP with the same initial weights
(:func:`isoproof.standard.paired_standard`), trained with the same data order and optimiser
settings. A linear classifier (one affine map, orthogonal init) trained the same way is the
control that locates both. Reported: final and best test accuracy per seed, their mean and
standard deviation, and the mean test-accuracy curves.

Why the linear control: by the recursion of ``docs/method.md`` §2, every
isotropic layer only rescales its pre-activation by a per-sample scalar ``g_l``, so the logits of
``[in, h, h, out]`` are ``g_1 g_0 (W_2 W_1 W_0 x + W_2 W_1 b_0 + W_2 psi_0) + g_1 (W_2 b_1 + psi_1)
+ b_2``: an affine function of ``x`` up to two per-sample scalars.

Reference points: the MNIST-1D paper reports about 68% test accuracy for its MLP baseline; MLPs on
sklearn digits usually reach about 97-98%.
"""

from __future__ import annotations

import copy
import statistics
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...mlp import IsotropicMLP
from ...standard import paired_standard, standard_mlp
from ...table import records_table
from ...train import fit
from .common import RECIPE, Result, Timer, load_data
from .plotting import figure, save_figure

__all__ = ["NAME", "TITLE", "run"]

NAME = "standard-vs-isotropic"
TITLE = "Exp 6: standard vs isotropic tanh (paired initial weights)"
SETTINGS: dict[str, Any] = {
    "hidden": [100, 100],
    "epochs": {"digits": 20, "mnist1d": 40},
    "seeds": 3,
}
QUICK: dict[str, Any] = {"hidden": [16, 16], "epochs": {"digits": 1, "mnist1d": 1}, "seeds": 2}
KINDS = ("isotropic", "standard", "linear")


_COLUMNS_1 = [
    ("data", "data"),
    ("activation", "model"),
    ("final test acc (%) mean", "mean"),
    ("std", "std"),
    ("best-epoch acc (%)", "best_mean"),
    ("s/run", "seconds_per_run"),
]

_COLUMNS_2 = [
    ("data", "data"),
    ("seed", "seed"),
    ("activation", "model"),
    ("epochs", "epochs"),
    ("final test acc (%)", "test_accuracy"),
    ("best (%)", "best_test_accuracy"),
    ("train acc (%)", "train_accuracy"),
]


def run(*, quick: bool = False, seed: int = 0, out: Any = None, verbose: bool = True) -> Result:
    """Train both activations for every seed on both data sets."""
    cfg = QUICK if quick else SETTINGS
    seeds = [seed + k for k in range(int(cfg["seeds"]))]
    rows: list[dict[str, Any]] = []
    curves: dict[str, dict[str, list[list[float]]]] = {}
    with Timer() as timer:
        for name in ("digits", "mnist1d"):
            data = load_data(name, quick=quick)
            widths = [data.n_features, *cfg["hidden"], data.n_classes]
            epochs = int(cfg["epochs"][name])
            for s in seeds:
                iso = IsotropicMLP(widths, generator=torch.Generator().manual_seed(s))
                linear = standard_mlp(
                    [data.n_features, data.n_classes], generator=torch.Generator().manual_seed(s)
                )
                nets = {
                    "isotropic": iso,
                    "standard": paired_standard(copy.deepcopy(iso)),
                    "linear": linear,
                }
                for kind, model in nets.items():
                    h = fit(
                        model, data, epochs=epochs, seed=s, verbose=False, **RECIPE.fit_kwargs()
                    )
                    acc = [100.0 * a for a in h.test_accuracy]
                    curves.setdefault(name, {}).setdefault(kind, []).append(acc)
                    rows.append(
                        {
                            "data": name,
                            "seed": s,
                            "model": kind,
                            "epochs": epochs,
                            "test_accuracy": acc[-1],
                            "best_test_accuracy": max(acc),
                            "train_accuracy": 100.0 * h.train_accuracy[-1],
                            "train_seconds": sum(h.epoch_seconds),
                        }
                    )
                    if verbose:
                        print(f"[{NAME}] {name} seed {s} {kind}: test {acc[-1]:.1f}%", flush=True)
    summary = _summarise(rows, list(curves))
    summary_table = records_table(_COLUMNS_1, summary)
    table = records_table(_COLUMNS_2, rows)
    text = (
        f"Settings{' (--quick: subsets)' if quick else ''}: [in, {_join(cfg['hidden'])}, 10], "
        f"epochs {cfg['epochs']}, seeds {seeds} (the seed sets the shared initial weights "
        f"and the data order); {RECIPE.text()}, orthogonal init, "
        "float32. Isotropic: trainable o, psi with decay 0.1. Linear: one affine map [in, 10] "
        "(not paired: it has no hidden layer).\n\n"
        "Mean over seeds:\n\n" + summary_table + "\n\nEvery run:\n\n" + table
    )
    figures = [] if out is None else [_plot(curves, Path(out))]
    payload = {
        "quick": quick,
        "seeds": seeds,
        "settings": cfg,
        "summary": summary,
        "rows": rows,
        "curves": curves,
        **timer.stamp(),
    }
    return Result(NAME, TITLE, text, payload, figures)


def _summarise(rows: list[dict[str, Any]], names: list[str]) -> list[dict[str, Any]]:
    """Mean and spread over seeds per (data set, activation)."""
    summary = []
    for name in names:
        for kind in KINDS:
            finals = [r["test_accuracy"] for r in rows if r["data"] == name and r["model"] == kind]
            best = [
                r["best_test_accuracy"] for r in rows if r["data"] == name and r["model"] == kind
            ]
            secs = [r["train_seconds"] for r in rows if r["data"] == name and r["model"] == kind]
            summary.append(
                {
                    "data": name,
                    "model": kind,
                    "mean": statistics.fmean(finals),
                    "std": statistics.stdev(finals) if len(finals) > 1 else 0.0,
                    "best_mean": statistics.fmean(best),
                    "seconds_per_run": statistics.fmean(secs),
                }
            )
    return summary


def _join(values: list[int]) -> str:
    return ", ".join(map(str, values))


def _plot(curves: dict[str, dict[str, list[list[float]]]], out: Path) -> Path:
    fig, axes = figure(1, len(curves), size=(5.0 * len(curves), 3.6))
    for ax, (name, by_kind) in zip(axes, curves.items(), strict=True):
        for k, kind in enumerate(KINDS):
            runs = np.asarray(by_kind[kind])
            mean, lo, hi = runs.mean(0), runs.min(0), runs.max(0)
            xs = np.arange(runs.shape[1])
            label = "linear (control)" if kind == "linear" else f"{kind} tanh"
            ax.plot(xs, mean, color=f"C{k}", label=f"{label}, mean of {len(runs)}")
            ax.fill_between(xs, lo, hi, color=f"C{k}", alpha=0.2)
        ax.set_xlabel("epoch")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    return save_figure(fig, out / f"{NAME}.png")
