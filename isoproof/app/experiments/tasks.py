"""Exp 3, task appending and removal: digits, then digits + MNIST-1D, then MNIST-1D only.

Setup (``docs/method.md`` §7, Exp 3, at laptop scale). The paper switches
tasks by loss weights over a fixed union architecture, and so does this experiment
(:func:`isoproof.data.multitask`): the input is the concatenation ``[digits 64 | MNIST-1D 40]``
(a sample fills its own block, the other is 0), the output has one 10-way head per task, and the
per-task loss weights go ``(1, 0)`` -> ``(1, 1)`` -> ``(0, 1)`` over three equal phases (rows of a
task with weight 0 are not visited). Two networks start from the same initial state: one runs the
scaffold buffer after every epoch (:class:`isoproof.train.AdaptSchedule`, ``K = 5``,
``theta = 0.95`` as in the paper), the other stays static. Both tasks' test accuracies are measured
after every epoch, including while a task is switched off.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch

from ...data import multitask
from ...mlp import IsotropicMLP
from ...table import records_table
from ...train import AdaptSchedule, History, fit
from .common import RECIPE, Result, Timer, load_data
from .plotting import figure, save_figure, shade_phases

__all__ = ["NAME", "PHASES", "TITLE", "run"]

NAME = "tasks"
TITLE = "Exp 3: task appending and removal with the scaffold buffer"
PHASES: tuple[tuple[str, tuple[float, float]], ...] = (
    ("digits", (1.0, 0.0)),
    ("digits + MNIST-1D", (1.0, 1.0)),
    ("MNIST-1D", (0.0, 1.0)),
)
SETTINGS: dict[str, Any] = {"hidden": [32, 32], "phase_epochs": 8, "buffer": 5, "threshold": 0.95}
QUICK: dict[str, Any] = {"hidden": [16, 16], "phase_epochs": 1, "buffer": 5, "threshold": 0.95}


_COLUMNS = [
    ("epoch", "epoch"),
    ("phase", "phase"),
    ("adaptive widths", "adaptive_widths"),
    ("adaptive params", "adaptive_parameters"),
    ("digits acc adaptive (%)", "adaptive_digits"),
    ("digits acc static (%)", "static_digits"),
    ("MNIST-1D acc adaptive (%)", "adaptive_mnist1d"),
    ("MNIST-1D acc static (%)", "static_mnist1d"),
]


def run(*, quick: bool = False, seed: int = 0, out: Any = None, verbose: bool = True) -> Result:
    """Train the adaptive and the static network over the three phases."""
    cfg = QUICK if quick else SETTINGS
    per = int(cfg["phase_epochs"])
    data = multitask(load_data("digits", quick=quick), load_data("mnist1d", quick=quick))
    widths = [data.n_features, *cfg["hidden"], data.n_classes]
    initial = IsotropicMLP(widths, generator=torch.Generator().manual_seed(seed))

    def weights(epoch: int) -> tuple[float, float]:
        return PHASES[min((epoch - 1) // per, len(PHASES) - 1)][1]

    histories: dict[str, History] = {}
    with Timer() as timer:
        for name, schedule in (
            ("adaptive", AdaptSchedule(int(cfg["buffer"]), float(cfg["threshold"]))),
            ("static", None),
        ):
            model = copy.deepcopy(initial)
            histories[name] = fit(
                model,
                data,
                epochs=per * len(PHASES),
                adapt=schedule,
                task_weights=weights,
                **RECIPE.fit_kwargs(),
                seed=seed,
                verbose=False,
            )
            if verbose:
                h = histories[name]
                print(
                    f"[{NAME}] {name}: final widths {h.widths[-1]}, task accuracies "
                    f"{[f'{a:.1%}' for a in h.task_accuracy[-1]]}",
                    flush=True,
                )
    ad, st = histories["adaptive"], histories["static"]
    rows = []
    for e in ad.epoch:
        phase = "init" if e == 0 else PHASES[min((e - 1) // per, len(PHASES) - 1)][0]
        rows.append(
            {
                "epoch": e,
                "phase": phase,
                "weights": ad.task_weights[e],
                "adaptive_widths": ad.widths[e],
                "adaptive_parameters": ad.parameters[e],
                "static_parameters": st.parameters[e],
                "adaptive_digits": 100.0 * ad.task_accuracy[e][0],
                "static_digits": 100.0 * st.task_accuracy[e][0],
                "adaptive_mnist1d": 100.0 * ad.task_accuracy[e][1],
                "static_mnist1d": 100.0 * st.task_accuracy[e][1],
            }
        )
    table = records_table(_COLUMNS, rows)
    text = (
        f"Settings{' (--quick: subsets)' if quick else ''}: union network {widths} (inputs "
        f"[digits 64 | MNIST-1D 40], heads [digits 10 | MNIST-1D 10]); {per} epochs per phase; "
        f"scaffold buffer K = {cfg['buffer']}, theta = {cfg['threshold']} after every epoch for "
        f"the adaptive net; the static net has the same initial weights; {RECIPE.text()}, "
        f"seed {seed}, float32. Test accuracy of each task on its own "
        "head, measured after every epoch (also while the task is off).\n\n" + table
    )
    figures = [] if out is None else [_plot(rows, per, Path(out))]
    payload = {
        "quick": quick,
        "seed": seed,
        "settings": {**cfg, "widths": widths, "phases": [list(p) for p in PHASES]},
        "rows": rows,
        "histories": {k: h.to_dict() for k, h in histories.items()},
        **timer.stamp(),
    }
    return Result(NAME, TITLE, text, payload, figures)


def _plot(rows: list[dict[str, Any]], per: int, out: Path) -> Path:
    fig, (ax_w, ax_a) = figure(1, 2, size=(11.0, 4.0))
    epochs = [r["epoch"] for r in rows]
    phases = [(k * per, (k + 1) * per, label) for k, (label, _) in enumerate(PHASES)]
    for ax in (ax_w, ax_a):
        shade_phases(ax, phases)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.set_xlim(0, epochs[-1])
    n_hidden = len(rows[0]["adaptive_widths"]) - 2
    for h in range(n_hidden):
        ax_w.plot(
            epochs,
            [r["adaptive_widths"][h + 1] for r in rows],
            marker=".",
            color=f"C{h}",
            label=f"adaptive, hidden layer {h}",
        )
    ax_w.axhline(rows[0]["adaptive_widths"][1], color="0.3", linestyle="--", label="static")
    ax_w.set_ylabel("hidden width")
    ax_w.legend(fontsize=8, loc="lower left")
    for key, label, colour in (("digits", "digits", "C0"), ("mnist1d", "MNIST-1D", "C3")):
        ax_a.plot(epochs, [r[f"adaptive_{key}"] for r in rows], "-", color=colour)
        ax_a.plot(epochs, [r[f"static_{key}"] for r in rows], "--", color=colour)
        ax_a.plot([], [], "-", color=colour, label=f"{label} (solid adaptive, dashed static)")
    ax_a.set_ylabel("test accuracy (%)")
    ax_a.set_ylim(0, 100)
    ax_a.legend(fontsize=8, loc="lower left")
    return save_figure(fig, out / f"{NAME}.png")
