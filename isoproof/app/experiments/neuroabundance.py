"""Exp 4, neuroabundance: train while every hidden layer moves linearly to a target width.

Setup (``docs/method.md`` §7, Exp 4, at laptop scale): ``[40, s, s, 10]`` on
MNIST-1D for every start width ``s`` and target width ``t`` in ``{16, 32, 64, 128}``. After each
epoch :class:`isoproof.train.WidthSchedule` grows (scaffold neurons, exact) or prunes (weakest
neurons, bounded) both hidden layers to ``round(s + (t - s) * min(e / E_s, 1))``, so the target is
reached after ``E_s`` epochs and then trained at fixed width. The diagonal ``s = t`` is the static
control. The optimiser state follows every resize.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...mlp import IsotropicMLP
from ...table import markdown_table, records_table
from ...train import WidthSchedule, fit
from .common import RECIPE, Result, Timer, load_data
from .plotting import figure, save_figure

__all__ = ["NAME", "TITLE", "WIDTHS", "run"]

NAME = "neuroabundance"
TITLE = "Exp 4: neuroabundance (linear width schedules on MNIST-1D)"
WIDTHS: tuple[int, ...] = (16, 32, 64, 128)
SETTINGS: dict[str, Any] = {"epochs": 12, "schedule_epochs": 8}
QUICK: dict[str, Any] = {"epochs": 2, "schedule_epochs": 1}


_COLUMNS = [
    ("start", "start"),
    ("target", "target"),
    ("final widths", "final_widths"),
    ("test acc (%)", "test_accuracy"),
    ("stored params", "final_parameters"),
    ("train s", "train_seconds"),
    ("resize s", "resize_seconds"),
]


def run(*, quick: bool = False, seed: int = 0, out: Any = None, verbose: bool = True) -> Result:
    """One run per (start, target) pair; final test accuracy and width trajectories."""
    cfg = QUICK if quick else SETTINGS
    data = load_data("mnist1d", quick=quick)
    rows: list[dict[str, Any]] = []
    with Timer() as timer:
        for start in WIDTHS:
            for target in WIDTHS:
                widths = [data.n_features, start, start, data.n_classes]
                model = IsotropicMLP(widths, generator=torch.Generator().manual_seed(seed))
                schedule = WidthSchedule((target, target), epochs=cfg["schedule_epochs"])
                h = fit(
                    model,
                    data,
                    epochs=cfg["epochs"],
                    width_schedule=schedule,
                    **RECIPE.fit_kwargs(),
                    seed=seed,
                    verbose=False,
                )
                rows.append(
                    {
                        "start": start,
                        "target": target,
                        "final_widths": h.widths[-1],
                        "test_accuracy": 100.0 * h.test_accuracy[-1],
                        "best_test_accuracy": 100.0 * max(h.test_accuracy),
                        "final_parameters": h.parameters[-1],
                        "train_seconds": sum(h.epoch_seconds),
                        "resize_seconds": sum(h.resize_seconds),
                        "hidden_width_per_epoch": [w[1] for w in h.widths],
                        "test_accuracy_per_epoch": [100.0 * a for a in h.test_accuracy],
                    }
                )
                if verbose:
                    print(
                        f"[{NAME}] {start} -> {target}: test {h.test_accuracy[-1]:.1%}, "
                        f"resize {sum(h.resize_seconds):.2f} s",
                        flush=True,
                    )
    table = records_table(_COLUMNS, rows)
    grid = markdown_table(
        ["start \\ target", *map(str, WIDTHS)],
        [[s, *(r["test_accuracy"] for r in rows if r["start"] == s)] for s in WIDTHS],
    )
    text = (
        f"Settings{' (--quick: small MNIST-1D)' if quick else ''}: [40, w, w, 10], "
        f"{cfg['epochs']} epochs, width schedule reaching the target after "
        f"{cfg['schedule_epochs']} epochs; {RECIPE.text()}, seed "
        f"{seed}, float32; {len(data)} training rows.\n\n"
        "Final test accuracy (%), start width (rows) to target width (columns); the diagonal is "
        "the static control:\n\n" + grid + "\n\nAll runs:\n\n" + table
    )
    figures = [] if out is None else [_plot(rows, Path(out))]
    payload = {
        "quick": quick,
        "seed": seed,
        "settings": {**cfg, "widths": list(WIDTHS), "rows": len(data)},
        "rows": rows,
        **timer.stamp(),
    }
    return Result(NAME, TITLE, text, payload, figures)


def _plot(rows: list[dict[str, Any]], out: Path) -> Path:
    fig, (ax_grid, ax_w) = figure(1, 2, size=(10.0, 4.0))
    n = len(WIDTHS)
    acc = np.array([[r["test_accuracy"] for r in rows if r["start"] == s] for s in WIDTHS])
    im = ax_grid.imshow(acc, cmap="viridis", origin="lower")
    for i in range(n):
        for j in range(n):
            ax_grid.text(j, i, f"{acc[i, j]:.1f}", ha="center", va="center", color="w", fontsize=9)
    ax_grid.set_xticks(range(n), [str(w) for w in WIDTHS])
    ax_grid.set_yticks(range(n), [str(w) for w in WIDTHS])
    ax_grid.set_xlabel("target width")
    ax_grid.set_ylabel("start width")
    ax_grid.set_title("final test accuracy (%)", fontsize=10)
    fig.colorbar(im, ax=ax_grid, shrink=0.8)
    for r in rows:
        k = WIDTHS.index(r["target"])
        ys = r["hidden_width_per_epoch"]
        ax_w.plot(range(len(ys)), ys, color=f"C{k}", alpha=0.8, linewidth=1.2)
    for k, t in enumerate(WIDTHS):
        ax_w.plot([], [], color=f"C{k}", label=f"target {t}")
    ax_w.set_yscale("log", base=2)
    ax_w.set_yticks(list(WIDTHS), [str(w) for w in WIDTHS])
    ax_w.set_xlabel("epoch")
    ax_w.set_ylabel("hidden width (both layers)")
    ax_w.set_title("width schedules", fontsize=10)
    ax_w.grid(alpha=0.3)
    ax_w.legend(fontsize=8)
    return save_figure(fig, out / f"{NAME}.png")
