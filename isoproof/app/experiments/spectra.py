"""Exp 2, spectra: singular-value distributions per epoch, isotropic vs standard tanh.

Setup (``docs/method.md`` §7, Exp 2, at laptop scale): ``[40, 100, 100, 10]``
on MNIST-1D, an :class:`~isoproof.IsotropicMLP` and a standard tanh MLP with the *same* initial
weights (:func:`isoproof.standard.paired_standard`; orthogonal, so every singular value starts at
1), trained identically (same data order). :func:`isoproof.train.fit` records the singular values
of every affine map after each epoch; the ridge plot shows their distribution per epoch for the
input map and the hidden-to-hidden map. In an isotropic network a small singular value is a
neuron that can be removed almost exactly, which is what the scaffold buffer counts.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...mlp import IsotropicMLP
from ...standard import paired_standard
from ...table import markdown_table
from ...train import History, fit
from .common import RECIPE, Result, Timer, load_data
from .plotting import figure, ridge, save_figure

__all__ = ["NAME", "TITLE", "run"]

NAME = "spectra"
TITLE = "Exp 2: singular-value spectra per epoch, isotropic vs standard tanh"
SETTINGS: dict[str, Any] = {"hidden": [100, 100], "epochs": 30}
QUICK: dict[str, Any] = {"hidden": [16, 16], "epochs": 2}
LAYERS = (0, 1)  # input map and the hidden-to-hidden map
SIGMA_FLOOR = 1e-2  # left edge of the log axis of the ridge plot


def _epochs_shown(n: int, k: int = 8) -> list[int]:
    """About ``k`` epochs from 0 to ``n``, always including both ends."""
    return sorted({round(i * n / (k - 1)) for i in range(k)}) if n >= k else list(range(n + 1))


def run(*, quick: bool = False, seed: int = 0, out: Any = None, verbose: bool = True) -> Result:
    """Train both networks and tabulate/plot their spectra per epoch."""
    cfg = QUICK if quick else SETTINGS
    data = load_data("mnist1d", quick=quick)
    widths = [data.n_features, *cfg["hidden"], data.n_classes]
    iso = IsotropicMLP(widths, generator=torch.Generator().manual_seed(seed))
    nets = {"isotropic tanh": iso, "standard tanh": paired_standard(copy.deepcopy(iso))}
    histories: dict[str, History] = {}
    with Timer() as timer:
        for name, model in nets.items():
            histories[name] = fit(
                model,
                data,
                epochs=int(cfg["epochs"]),
                seed=seed,
                verbose=False,
                **RECIPE.fit_kwargs(),
            )
            if verbose:
                print(f"[{NAME}] {name}: test {histories[name].test_accuracy[-1]:.1%}", flush=True)
    shown = _epochs_shown(int(cfg["epochs"]))
    rows = []
    for name, h in histories.items():
        for layer in LAYERS:
            for e in shown:
                s = np.asarray(_real(h, e, layer, widths))
                rows.append(
                    {
                        "model": name,
                        "map": layer,
                        "epoch": e,
                        "sigma_max": float(s.max()),
                        "sigma_median": float(np.median(s)),
                        "sigma_min": float(s.min()),
                        "count_below_0.95": int((s <= 0.95).sum()),
                        "count_below_0.1": int((s <= 0.1).sum()),
                        "test_accuracy": 100.0 * h.test_accuracy[e],
                    }
                )
    table = markdown_table(
        [
            "model",
            "map",
            "epoch",
            "sigma max",
            "sigma median",
            "sigma min",
            "# <= 0.95",
            "# <= 0.1",
            "test acc (%)",
        ],
        [list(r.values()) for r in rows],
    )
    text = (
        f"Settings{' (--quick: small MNIST-1D)' if quick else ''}: {widths} on MNIST-1D, "
        f"{cfg['epochs']} epochs, paired orthogonal initial weights and identical data order; "
        f"{RECIPE.text()}, seed {seed}, float32. Map 0 is the input "
        "map (40 -> 100: its 40 singular values are shown, not the 60 structural zeros), map 1 "
        "the hidden-to-hidden map. "
        "The JSON file has every epoch and every map.\n\n" + table
    )
    figures = [] if out is None else [_plot(histories, shown, Path(out))]
    payload = {
        "quick": quick,
        "seed": seed,
        "settings": {**cfg, "widths": widths},
        "rows": rows,
        "singular_values": {k: h.singular_values for k, h in histories.items()},
        "test_accuracy": {k: h.test_accuracy for k, h in histories.items()},
        **timer.stamp(),
    }
    return Result(NAME, TITLE, text, payload, figures)


def _real(h: History, epoch: int, layer: int, widths: list[int]) -> list[float]:
    """The ``min(in, out)`` singular values of a map (without the structural zeros)."""
    return h.singular_values[epoch][layer][: min(widths[layer], widths[layer + 1])]


def _plot(histories: dict[str, History], shown: list[int], out: Path) -> Path:
    fig, axes = figure(len(LAYERS), len(histories), size=(5.0 * len(histories), 3.4 * len(LAYERS)))
    for row, layer in enumerate(LAYERS):
        values = [
            v for h in histories.values() for e in shown for v in _real(h, e, layer, h.widths[e])
        ]
        span = (SIGMA_FLOOR, max(values) * 1.05)
        for col, (name, h) in enumerate(histories.items()):
            ax = axes[row * len(histories) + col]
            ridge(
                ax,
                [_real(h, e, layer, h.widths[e]) for e in shown],
                [f"epoch {e}" for e in shown],
                value_range=span,
                color=f"C{col}",
                xlabel=f"singular value (log; values < {SIGMA_FLOOR:g} in the first bin)",
                bins=60,
                log=True,
            )
            ax.set_title(f"{name}: map {layer}", fontsize=10)
    return save_figure(fig, out / f"{NAME}.png")
