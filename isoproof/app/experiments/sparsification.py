"""Exp 5, sparsification: alternating full diagonalisation of trained deep MLPs.

Setup (``docs/method.md`` §3 and §7, Exp 5, at laptop scale): train
``[in, 256 x k, out]`` for ``k = 2 .. 6`` hidden layers on digits and MNIST-1D, then
:func:`isoproof.sparsify` (full diagonalisation of maps 1, 3, 5, ...: exact up to rounding) and
report test accuracy and stored numbers before and after. With ``K = k - 1`` hidden-to-hidden maps
of width ``n`` the hidden-to-hidden weights drop from ``K n^2`` to
``floor(K/2) n^2 + ceil(K/2) n``; the first and last maps, biases, psi and ``o`` are unchanged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ...mlp import IsotropicMLP
from ...ops.diagonalisation import sparsify
from ...table import records_table
from ...train import evaluate, fit
from .common import RECIPE, Result, Timer, load_data
from .plotting import figure, save_figure

__all__ = ["NAME", "TITLE", "run"]

NAME = "sparsification"
TITLE = "Exp 5: sparsification by alternating full diagonalisation"
DEPTHS: tuple[int, ...] = (2, 3, 4, 5, 6)
SETTINGS: dict[str, Any] = {"width": 256, "epochs": {"digits": 10, "mnist1d": 8}}
QUICK: dict[str, Any] = {"width": 24, "epochs": {"digits": 1, "mnist1d": 1}}


def expected_hidden_weights(width: int, k: int) -> tuple[int, int]:
    """``(K n^2, floor(K/2) n^2 + ceil(K/2) n)`` for ``K = k - 1`` maps of width ``n``."""
    K = k - 1
    return K * width * width, (K // 2) * width * width + ((K + 1) // 2) * width


_COLUMNS = [
    ("data", "data"),
    ("hidden layers", "hidden_layers"),
    ("diagonal maps", "diagonal_maps"),
    ("acc before (%)", "accuracy_before"),
    ("acc after (%)", "accuracy_after"),
    ("stored before", "params_before"),
    ("stored after", "params_after"),
    ("ratio", "param_ratio"),
    ("hidden-hidden before", "hidden_weights_before"),
    ("hidden-hidden after", "hidden_weights_after"),
    ("max abs logit change", "max_abs_change"),
]


def run(*, quick: bool = False, seed: int = 0, out: Any = None, verbose: bool = True) -> Result:
    """Train each depth, sparsify, and compare accuracy and stored numbers."""
    cfg = QUICK if quick else SETTINGS
    width = int(cfg["width"])
    rows: list[dict[str, Any]] = []
    with Timer() as timer:
        for name in ("digits", "mnist1d"):
            data = load_data(name, quick=quick)
            epochs = cfg["epochs"][name]
            for k in DEPTHS:
                widths = [data.n_features, *([width] * k), data.n_classes]
                model = IsotropicMLP(widths, generator=torch.Generator().manual_seed(seed))
                fit(model, data, epochs=epochs, seed=seed, verbose=False, **RECIPE.fit_kwargs())
                before = evaluate(model, data)["accuracy"]
                hidden_before = model.count_parameters(hidden_only=True)
                receipt = sparsify(model, probe=data.x_test)
                after = evaluate(model, data)["accuracy"]
                row = {
                    "data": name,
                    "hidden_layers": k,
                    "widths": widths,
                    "accuracy_before": 100.0 * before,
                    "accuracy_after": 100.0 * after,
                    "params_before": receipt.params_before,
                    "params_after": receipt.params_after,
                    "param_ratio": receipt.param_ratio,
                    "hidden_weights_before": hidden_before,
                    "hidden_weights_after": model.count_parameters(hidden_only=True),
                    "hidden_weights_formula": expected_hidden_weights(width, k),
                    "diagonal_maps": model.diagonal_layers,
                    "max_abs_change": receipt.max_abs_change,
                }
                rows.append(row)
                if verbose:
                    print(
                        f"[{NAME}] {name} k={k}: accuracy {before:.1%} -> {after:.1%}, params "
                        f"{receipt.params_before} -> {receipt.params_after}",
                        flush=True,
                    )
    table = records_table(_COLUMNS, rows)
    epochs = cfg["epochs"]
    text = (
        f"Settings{' (--quick: subsets)' if quick else ''}: hidden width {width}, epochs "
        f"{epochs}, {RECIPE.text()}, orthogonal init, seed {seed}; "
        "float32. 'Stored' counts every weight, bias, psi entry and o; a diagonal map stores its "
        "diagonal only.\n\n" + table
    )
    figures = [] if out is None else [_plot(rows, Path(out))]
    payload = {
        "quick": quick,
        "seed": seed,
        "settings": {"width": width, "epochs": epochs, "depths": list(DEPTHS)},
        "rows": rows,
        **timer.stamp(),
    }
    return Result(NAME, TITLE, text, payload, figures)


def _plot(rows: list[dict[str, Any]], out: Path) -> Path:
    names = list(dict.fromkeys(r["data"] for r in rows))
    fig, axes = figure(1, len(names), size=(5.2 * len(names), 4.0))
    for ax, name in zip(axes, names, strict=True):
        sub = [r for r in rows if r["data"] == name]
        ks = [r["hidden_layers"] for r in sub]
        before = [r["params_before"] / 1e3 for r in sub]
        after = [r["params_after"] / 1e3 for r in sub]
        ax.bar([k - 0.2 for k in ks], before, width=0.4, label="dense", color="0.65")
        ax.bar([k + 0.2 for k in ks], after, width=0.4, label="sparsified", color="C0")
        ax.set_xlabel(f"hidden layers k (width {sub[0]['widths'][1]})")
        ax.set_ylabel("stored numbers (thousands)")
        ax.set_xticks(ks)
        ax2 = ax.twinx()
        ax2.plot(ks, [r["accuracy_before"] for r in sub], "o-", color="C3", label="acc dense")
        ax2.plot(ks, [r["accuracy_after"] for r in sub], "x--", color="k", label="acc sparsified")
        ax2.set_ylabel("test accuracy (%)")
        lo = min(min(r["accuracy_before"], r["accuracy_after"]) for r in sub)
        ax2.set_ylim(max(0.0, lo - 15), 100)
        ax.set_title(name)
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = ax2.get_legend_handles_labels()
        ax.legend(
            h1 + h2,
            l1 + l2,
            fontsize=7,
            ncol=4,
            loc="upper center",
            bbox_to_anchor=(0.5, -0.16),
            frameon=False,
        )
    return save_figure(fig, out / f"{NAME}.png")
