"""The scaffold buffer on channels, and full diagonalisation of 1x1 convolutions, on digits.

Two parts, both on sklearn digits as ``[1, 8, 8]`` images (``docs/method.md`` §3 and §5):

* *Buffer*: an :class:`~isoproof.IsotropicConvNet` starts with few channels per conv layer and
  is trained with :class:`~isoproof.AdaptSchedule` (after every epoch :func:`isoproof.adapt`
  grows or prunes every channel space until exactly ``buffer`` channels have singular value
  ``<= threshold``). Reported: channel counts after every epoch and the final accuracy.
* *Sparsification*: a CNN alternating 3x3 and 1x1 convolutions is trained, then
  :func:`isoproof.sparsify` fully diagonalises its pointwise interior maps (the 1x1 layers: a
  ``k > 1`` kernel cannot be diagonalised by one basis at every tap). Reported: stored numbers
  before and after, test accuracy before and after and the largest logit change (exact up to
  float32 rounding).
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...conv import IsotropicConvNet
from ...data import load_digits
from ...ops.diagonalisation import sparsify
from ...table import markdown_table
from ...train import AdaptSchedule, evaluate, fit
from .common import Result, Timer
from .plotting import figure, save_figure

__all__ = ["NAME", "TITLE", "run"]

NAME = "cnn-channels"
TITLE = "Channel spaces: the scaffold buffer and sparsification of 1x1 convolutions"
SETTINGS: dict[str, Any] = {
    "buffer_arch": [
        {"conv": 4, "k": 3, "padding": 1},
        {"conv": 4, "k": 3, "padding": 1, "pool": 2},
    ],
    "buffer": 3,
    "threshold": 0.95,
    "buffer_epochs": 10,
    "sparse_arch": [
        {"conv": 16, "k": 3, "padding": 1},
        {"conv": 16, "k": 1},
        {"conv": 16, "k": 3, "padding": 1, "pool": 2},
        {"conv": 16, "k": 1},
    ],
    "sparse_epochs": 8,
    "seeds": 3,
}
QUICK: dict[str, Any] = {**SETTINGS, "buffer_epochs": 2, "sparse_epochs": 1, "seeds": 2}


def run(*, quick: bool = False, seed: int = 0, out: Any = None, verbose: bool = True) -> Result:
    """Both parts for every seed."""
    cfg = QUICK if quick else SETTINGS
    seeds = [seed + k for k in range(int(cfg["seeds"]))]
    data = load_digits(conv=True)
    if quick:
        data = data.subset(300, 150)
    buffer_rows, sparse_rows = [], []
    with Timer() as timer:
        for s in seeds:
            g = torch.Generator().manual_seed(s)
            net = IsotropicConvNet(data.sample_shape, cfg["buffer_arch"], 10, generator=g)
            schedule = AdaptSchedule(buffer=cfg["buffer"], threshold=cfg["threshold"])
            h = fit(net, data, epochs=cfg["buffer_epochs"], adapt=schedule, seed=s, verbose=False)
            acc = 100.0 * h.test_accuracy[-1]
            buffer_rows.append(
                {"seed": s, "widths": h.widths, "test_accuracy": acc, "final_widths": net.widths}
            )
            g = torch.Generator().manual_seed(s)
            net = IsotropicConvNet(data.sample_shape, cfg["sparse_arch"], 10, generator=g)
            fit(net, data, epochs=cfg["sparse_epochs"], seed=s, verbose=False)
            sparse_rows.append(_sparsify(net, data, s))
            if verbose:
                print(f"[{NAME}] seed {s}: widths {net.widths}, buffer "
                      f"{buffer_rows[-1]['final_widths']}", flush=True)  # fmt: skip
    text = _text(cfg, seeds, quick, buffer_rows, sparse_rows)
    figures = [] if out is None else [_plot(buffer_rows, Path(out))]
    payload = {"quick": quick, "seeds": seeds, "settings": cfg, "buffer": buffer_rows,
               "sparsification": sparse_rows, **timer.stamp()}  # fmt: skip
    return Result(NAME, TITLE, text, payload, figures)


def _sparsify(net: IsotropicConvNet, data: Any, seed: int) -> dict[str, Any]:
    before = evaluate(net, data)["accuracy"]
    params = net.count_parameters()
    with torch.no_grad():
        logits = net(data.x_test)
    receipt = sparsify(net)
    with torch.no_grad():
        change = float((net(data.x_test) - logits).abs().max())
    return {
        "seed": seed, "layers": receipt.layer,
        "diagonal_layers": net.diagonal_layers, "parameters_before": params,
        "parameters_after": net.count_parameters(), "accuracy_before": 100.0 * before,
        "accuracy_after": 100.0 * evaluate(net, data)["accuracy"], "max_logit_change": change,
    }  # fmt: skip


def _text(cfg: dict[str, Any], seeds: list[int], quick: bool, buffer_rows: list[dict[str, Any]],
          sparse_rows: list[dict[str, Any]]) -> str:  # fmt: skip
    btable = markdown_table(
        ["seed", "widths after each epoch", "final widths", "test acc (%)"],
        [[r["seed"], " -> ".join(str(w[1:-1]) for w in r["widths"]), str(r["final_widths"]),
          r["test_accuracy"]] for r in buffer_rows],
    )  # fmt: skip
    stable = markdown_table(
        ["seed", "diagonal maps", "stored before", "stored after", "acc before (%)",
         "acc after (%)", "max |logit change|"],
        [[r["seed"], str(r["diagonal_layers"]), r["parameters_before"], r["parameters_after"],
          r["accuracy_before"], r["accuracy_after"], r["max_logit_change"]] for r in sparse_rows],
    )  # fmt: skip
    acc = statistics.fmean(r["test_accuracy"] for r in buffer_rows)
    saved = statistics.fmean(
        1 - r["parameters_after"] / r["parameters_before"] for r in sparse_rows
    )
    worst = max(r["max_logit_change"] for r in sparse_rows)
    drop = max(abs(r["accuracy_after"] - r["accuracy_before"]) for r in sparse_rows)
    return (
        f"Settings{' (--quick: subsets)' if quick else ''}: {cfg}; seeds {seeds}; AdamW lr 1e-3, "
        "weight decay 1e-3, batch 48, float32, digits [1, 8, 8].\n\n"
        f"**Buffer.** Starting from {cfg['buffer_arch'][0]['conv']} channels per conv layer, the "
        f"buffer ends at widths {[r['final_widths'] for r in buffer_rows]} with mean test "
        f"accuracy {acc:.1f}%.\n\n" + btable + "\n\n"
        f"**Sparsification of 1x1 layers.** Diagonalising the 1x1 maps stores {100 * saved:.1f}% "
        f"fewer numbers on average; the largest logit change is {worst:.2g} and the largest "
        f"accuracy change {drop:.2f} pp.\n\n" + stable
    )


def _plot(buffer_rows: list[dict[str, Any]], out: Path) -> Path:
    fig, axes = figure(1, 1, size=(5.0, 3.4))
    ax = axes[0]
    for k, r in enumerate(buffer_rows):
        w = np.asarray([x[1:-1] for x in r["widths"]])
        for layer in range(w.shape[1]):
            style = "-" if layer == 0 else "--"
            ax.plot(w[:, layer], style, color=f"C{k}", label=f"seed {r['seed']}, layer {layer}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("channels")
    ax.set_title("scaffold buffer on channel spaces (digits)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return save_figure(fig, out / f"{NAME}.png")
