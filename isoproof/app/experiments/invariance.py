"""Exp 1, invariance: how much does growing or pruning a trained layer change the function?

Setup (``docs/method.md`` §7, Exp 1, at laptop scale): train
``[64, 100, 100, 10]`` on digits and ``[40, 100, 100, 10]`` on MNIST-1D in four ``(o, psi)`` modes,
fully diagonalise map 1 (:func:`isoproof.full_diagonalise`, exact), then apply to a copy each of
``+75, +25, +1`` neurogeneses (:func:`isoproof.grow`), nothing, and ``1, 5, 25, 50, 75``
neurodegenerations (:func:`isoproof.prune`, weakest first) on hidden layer 1, and measure on the
test split:

* ``delta acc``: test accuracy after minus before (percentage points);
* ``removed sigma mass``: ``100 * sum(removed sigma) / sum(all sigma of map 1)`` (%);
* ``scaled error``: ``100/N sum_rows |z_post - z_pre| / |z_pre|`` (%), logits ``z``;
* ``KL``: ``mean_rows KL(softmax(z_pre) || softmax(z_post))``.

Modes: ``none`` = no ``o``, no psi (pruning with the expectation update and recorded gains); ``o``
= trainable ``o`` only; ``psi`` = psi (with decay) only; ``both`` = the full method. Growth is
exact in every mode (float rounding only); pruning is exact only at ``sigma = 0`` and with both
corrections (proofs/neurodegeneration.py).
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from ...mlp import IsotropicMLP
from ...ops.diagonalisation import full_diagonalise, singular_values
from ...ops.neurodegeneration import prune
from ...ops.neurogenesis import grow
from ...table import markdown_table
from ...train import evaluate, fit
from .common import RECIPE, Result, Timer, load_data
from .plotting import figure, save_figure

__all__ = ["MODES", "NAME", "OPS", "TITLE", "output_change_metrics", "run"]

NAME = "invariance"
TITLE = "Exp 1: invariance of growth and pruning (scaled output error, KL)"
OPS: tuple[int, ...] = (75, 25, 1, 0, -1, -5, -25, -50, -75)
MODES: dict[str, tuple[str, str]] = {
    "none": ("none", "none"),
    "o": ("trainable", "none"),
    "psi": ("none", "decay"),
    "both": ("trainable", "decay"),
}
SETTINGS: dict[str, Any] = {
    "digits": {"hidden": [100, 100], "epochs": 20},
    "mnist1d": {"hidden": [100, 100], "epochs": 30},
}


def output_change_metrics(z_pre: torch.Tensor, z_post: torch.Tensor) -> dict[str, float]:
    """``scaled_error`` (%, mean relative L2 change of the logits) and ``kl`` (mean, nats)."""
    a, b = z_pre.double(), z_post.double()
    rel = (b - a).norm(dim=-1) / a.norm(dim=-1).clamp_min(1e-300)
    logp, logq = a.log_softmax(-1), b.log_softmax(-1)
    kl = (logp.exp() * (logp - logq)).sum(-1)
    return {"scaled_error": 100.0 * float(rel.mean()), "kl": float(kl.mean())}


@torch.no_grad()
def _logits(model: IsotropicMLP, x: torch.Tensor) -> torch.Tensor:
    model.eval()
    return model(x.to(model.dtype))


def _rows(model: IsotropicMLP, data: Any, seed: int) -> list[dict[str, Any]]:
    x = data.x_test
    z_pre = _logits(model, x)
    acc_pre = evaluate(model, data)["accuracy"]
    sigma = singular_values(model, 1)
    total = float(sigma.sum())
    rows = []
    for op in OPS:
        m = copy.deepcopy(model)
        removed: tuple[float, ...] = ()
        bound = 0.0
        if op > 0:
            r = grow(m, 1, op, generator=torch.Generator().manual_seed(seed))
            bound = r.bound
        elif op < 0:
            r = prune(m, 1, -op)
            removed, bound = r.singular_values, r.bound
        z_post = _logits(m, x)
        metrics = output_change_metrics(z_pre, z_post)
        rows.append(
            {
                "op": f"{op:+d}" if op else "0",
                "width": m.widths[2],
                "delta_acc": 100.0 * (evaluate(m, data)["accuracy"] - acc_pre),
                "removed_sigma_mass": 100.0 * sum(removed) / total if total else 0.0,
                "max_removed_sigma": max(removed) if removed else 0.0,
                **metrics,
                "max_abs_change": float((z_post.double() - z_pre.double()).abs().max()),
                "bound": bound,
            }
        )
    return rows


def run(*, quick: bool = False, seed: int = 0, out: Any = None, verbose: bool = True) -> Result:
    """Train, diagonalise, then grow/prune copies; one row per (data set, mode, operation)."""
    rows: list[dict[str, Any]] = []
    accuracy: dict[str, dict[str, float]] = {}
    settings = {
        name: {**cfg, "epochs": 1 if quick else cfg["epochs"]} for name, cfg in SETTINGS.items()
    }
    with Timer() as timer:
        for name, cfg in settings.items():
            data = load_data(name, quick=quick)
            widths = [data.n_features, *cfg["hidden"], data.n_classes]
            for mode, (o, psi) in MODES.items():
                gen = torch.Generator().manual_seed(seed)
                model = IsotropicMLP(widths, intrinsic_length=o, psi=psi, generator=gen)
                fit(
                    model,
                    data,
                    epochs=cfg["epochs"],
                    seed=seed,
                    verbose=False,
                    **RECIPE.fit_kwargs(),
                )
                if psi == "none":
                    model.record_gains(data.x_train)  # the expectation update needs mean gains
                full_diagonalise(model, 1)  # exact: proofs/diagonalisation.py
                acc = evaluate(model, data)["accuracy"]
                accuracy.setdefault(name, {})[mode] = 100.0 * acc
                for row in _rows(model, data, seed):
                    rows.append({"data": name, "mode": mode, "accuracy": 100.0 * acc, **row})
                if verbose:
                    print(f"[{NAME}] {name} mode {mode}: test accuracy {acc:.1%}", flush=True)
    figures = [] if out is None else [_plot(rows, out)]
    table, acc_table = _tables(rows, accuracy)
    lines = [
        _settings_line(settings, quick, seed),
        "",
        "Test accuracy (%) after training and full diagonalisation of map 1:",
        "",
        acc_table,
        "",
        "Operations on hidden layer 1 (width 100): `+n` grows n scaffold neurons, `-n` prunes the "
        "n weakest.",
        "",
        table,
    ]
    data_out = {
        "quick": quick,
        "seed": seed,
        "settings": settings,
        "modes": {k: {"intrinsic_length": o, "psi": p} for k, (o, p) in MODES.items()},
        "accuracy": accuracy,
        "rows": rows,
        **timer.stamp(),
    }
    return Result(NAME, TITLE, "\n".join(lines), data_out, figures)


def _tables(rows: list[dict[str, Any]], accuracy: dict[str, dict[str, float]]) -> tuple[str, str]:
    """The per-operation table and the accuracy-per-mode table."""
    headers = [
        "data",
        "mode (o, psi)",
        "op",
        "width",
        "delta acc (pp)",
        "removed sigma mass (%)",
        "scaled error (%)",
        "KL",
    ]
    table = markdown_table(
        headers,
        [
            [
                r["data"],
                _mode_label(r["mode"]),
                r["op"],
                r["width"],
                r["delta_acc"],
                r["removed_sigma_mass"],
                r["scaled_error"],
                r["kl"],
            ]
            for r in rows
        ],
    )
    acc_table = markdown_table(
        ["data", *(_mode_label(m) for m in MODES)],
        [[name, *(accs[m] for m in MODES)] for name, accs in accuracy.items()],
    )
    return table, acc_table


def _mode_label(mode: str) -> str:
    o, psi = MODES[mode]
    return f"{mode} ({'o' if o != 'none' else '-'}, {'psi' if psi != 'none' else '-'})"


def _settings_line(settings: dict[str, Any], quick: bool, seed: int) -> str:
    parts = [f"{n}: hidden {cfg['hidden']}, {cfg['epochs']} epochs" for n, cfg in settings.items()]
    mode = " (--quick: subsets, 1 epoch)" if quick else ""
    return (
        f"Settings{mode}: {'; '.join(parts)}; {RECIPE.text()}, "
        f"orthogonal init, seed {seed}; float32."
    )


def _plot(rows: list[dict[str, Any]], out: Any) -> Any:
    from pathlib import Path

    names = list(dict.fromkeys(r["data"] for r in rows))
    fig, axes = figure(1, len(names), size=(5.2 * len(names), 3.8))
    ops = [f"{op:+d}" if op else "0" for op in OPS]
    for ax, name in zip(axes, names, strict=True):
        for k, mode in enumerate(MODES):
            ys = [
                max(r["scaled_error"], 1e-9)
                for r in rows
                if r["data"] == name and r["mode"] == mode
            ]
            ax.plot(range(len(ops)), ys, marker="o", label=_mode_label(mode), color=f"C{k}")
        ax.set_yscale("log")
        ax.annotate(
            "no operation: exactly 0\n(drawn at 1e-9)",
            (ops.index("0"), 1e-9),
            xytext=(8, 4),
            textcoords="offset points",
            fontsize=7,
        )
        ax.set_xticks(range(len(ops)), ops)
        ax.axvline(ops.index("0"), color="0.5", linewidth=0.8, linestyle=":")
        ax.set_xlabel("neurons added (+) / removed (-) in hidden layer 1")
        ax.set_ylabel("scaled output error (%)")
        ax.set_title(name)
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(fontsize=8, title="mode (o, psi)", title_fontsize=8)
    return save_figure(fig, Path(out) / f"{NAME}.png")
