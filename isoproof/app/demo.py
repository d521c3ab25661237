"""The end-to-end demo behind ``make demo`` and ``isoproof demo``.

Steps (each prints one line; the summary table comes last):

1. **prove**: every SymPy claim holds and every negative control fails (``proofs/``);
2. **exact surgery**: a 6-hidden-layer float64 model is left-diagonalised, grown, pruned back and
   sparsified; the function change is measured (expected ~1e-15);
3. **train** ``[64, 128, 128, 128, 10]`` on sklearn digits with the scaffold buffer (the paper's
   ``buffer=5, threshold=0.95``): the hidden layers shrink while it learns;
4. **prune** every neuron with ``sigma <= 0.1``, then **sparsify** (exact);
5. **save** (safetensors) and reload: bit-identical outputs;
6. **export** to ONNX, **verify** it in onnxruntime and the ONNX reference evaluator on the test
   set and adversarial rows, and time it against the export of the dense trained model;
7. **the CNN path** (``[CNN]`` lines): an :class:`~isoproof.IsotropicConvNet` on digits as
   ``[1, 8, 8]`` images is trained with the scaffold buffer on its channel spaces, pruned
   (``sigma <= 0.1``), its 1x1 convolution sparsified, exported (``Conv`` ops, the channel norm as
   a ones-kernel ``Conv``), verified, and timed against the export of the trained CNN.

Outputs go to ``out/demo`` (``--out``): the model, the ONNX files, ``proofs.json``,
``summary.json`` and two plots (``training.png``: accuracy and widths per epoch; ``spectra.png``:
singular values of every map after training and after pruning).
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import ops
from ..files import atomic_write_text
from ..io import load, save
from ..mlp import IsotropicMLP
from ..ops.neurodegeneration import prune, prune_below
from ..table import format_table

__all__ = ["run_demo"]


def _say(msg: str) -> None:
    print(msg, flush=True)


def _accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(-1) == y).double().mean())


def _max_change(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.detach().double() - b.detach().double()).abs().max())


def _latencies_ms(paths: dict[str, Path], x: np.ndarray, runs: int) -> dict[str, float]:
    """Median ORT latency (one thread, ms) of each file, in interleaved rounds."""
    from isoproof.exporters.runtime import interleaved_medians, ort_session

    sessions = {name: ort_session(path, threads=1) for name, path in paths.items()}
    calls = {n: (lambda s=s: s.run(None, {s.get_inputs()[0].name: x})) for n, s in sessions.items()}
    return {name: 1e3 * t for name, t in interleaved_medians(calls, runs).items()}


def _cnn_path(out: Path, *, seed: int, epochs: int, latency_runs: int) -> dict[str, Any]:
    """Train, prune, sparsify, export, verify and time an isotropic CNN on digits images."""
    from isoproof.exporters import export_onnx, verify_onnx

    from ..conv import IsotropicConvNet
    from ..data import load_digits
    from ..train import AdaptSchedule, fit

    data = load_digits(seed=seed, conv=True)
    x, y = data.x_test, data.y_test
    layers = [
        {"conv": 12, "k": 3, "padding": 1},
        {"conv": 12, "k": 1},
        {"conv": 12, "k": 3, "padding": 1, "pool": 2},
    ]
    model = IsotropicConvNet([1, 8, 8], layers, 10, generator=torch.Generator().manual_seed(seed))
    start = model.widths
    t0 = time.perf_counter()
    fit(model, data, epochs=epochs, lr=3e-3, seed=seed, verbose=False,
        adapt=AdaptSchedule(buffer=3, threshold=0.95))  # fmt: skip
    trained = copy.deepcopy(model)
    y_trained = trained(x).detach()
    _say(
        f"[CNN] trained an isotropic CNN on digits [1, 8, 8] for {epochs} epochs with the "
        f"scaffold buffer (3, 0.95) on its channels: widths {start} -> {model.widths}, test "
        f"accuracy {_accuracy(model, x, y):.2%} ({time.perf_counter() - t0:.1f} s)"
    )
    pruned = prune_below(model, 0.1, probe=x)
    sparse = ops.sparsify(model, probe=x)
    _say(
        f"[CNN] prune_below(0.1): widths {list(pruned.widths_before)} -> {model.widths}, max "
        f"change {pruned.max_abs_change:.2g}; sparsify (1x1 maps {model.diagonal_layers}): "
        f"params {sparse.params_before} -> {sparse.params_after}, max change "
        f"{sparse.max_abs_change:.2g}"
    )
    path = export_onnx(model, out / "cnn.onnx")
    report = verify_onnx(path, model, inputs=x, labels=y)
    dense = export_onnx(trained, out / "cnn-trained.onnx")
    latency = _latencies_ms({"final": path, "trained": dense}, x[:1].numpy(), latency_runs)
    _say(
        f"[CNN] exported {path}: ops {sorted(report.ops)}, max |onnx - torch| "
        f"{report.max_abs:.2g}, verification {'passed' if report.ok else 'FAILED'}; ORT latency "
        f"(b=1) {latency['trained'] * 1e3:.0f} us trained -> {latency['final'] * 1e3:.0f} us "
        f"pruned + sparsified; accuracy {_accuracy(trained, x, y):.2%} -> "
        f"{_accuracy(model, x, y):.2%}, max logit change {_max_change(model(x), y_trained):.2g}"
    )
    return {
        "widths": {"start": start, "trained": trained.widths, "final": model.widths},
        "params": {"trained": trained.count_parameters(), "final": model.count_parameters()},
        "accuracy": {"trained": _accuracy(trained, x, y), "final": _accuracy(model, x, y)},
        "function_change": {
            "prune_below": pruned.max_abs_change,
            "sparsify": sparse.max_abs_change,
        },
        "onnx": {"max_abs": report.max_abs, "ok": report.ok, "ops": report.ops},
        "latency_ms": latency,
        "onnx_file": str(path),
    }


def _exact_surgery() -> list[list[object]]:
    """Step 2: the table of issue 2 (6 hidden layers, float64)."""
    g = torch.Generator().manual_seed(0)
    model = IsotropicMLP([32] + [64] * 6 + [10], dtype=torch.float64, generator=g)
    with torch.no_grad():  # non-trivial biases, psi and o, so nothing is exact by accident
        for lin in model.linears:
            lin.bias.copy_(0.3 * torch.randn(lin.bias.shape, generator=g, dtype=torch.float64))
        for p in model.psi:
            p.copy_(0.3 * torch.randn(p.shape, generator=g, dtype=torch.float64))
        for act in model.activations:
            act.set_o(0.2)
    x = torch.randn(256, 32, generator=g, dtype=torch.float64)
    y0 = model(x).detach()
    rows: list[list[object]] = [
        [
            "dense",
            model.widths,
            model.count_parameters(),
            model.count_parameters(hidden_only=True),
            0.0,
        ]
    ]
    steps = [
        ("left_diagonalise(3)", lambda: ops.left_diagonalise(model, 3, probe=x)),
        ("grow(2, n=8)", lambda: ops.grow(model, 2, 8, probe=x)),
        ("prune(2, n=8)", lambda: prune(model, 2, 8, probe=x)),
        ("sparsify()", lambda: ops.sparsify(model, probe=x)),
    ]
    for name, op in steps:
        op()
        rows.append(
            [
                name,
                model.widths,
                model.count_parameters(),
                model.count_parameters(hidden_only=True),
                _max_change(model(x), y0),
            ]
        )
    return rows


def _collapse_step(
    model: IsotropicMLP, x: torch.Tensor, onnx_path: Path, out: Path, runs: int
) -> dict[str, Any]:
    """Collapse the final model (``ip.collapse``): size, ONNX parity and latency vs its file."""
    from isoproof.exporters import export_onnx, verify_onnx

    from ..collapse import collapse

    collapsed, receipt = collapse(model, probe=x)
    path = export_onnx(collapsed, out / "collapsed.onnx")
    report = verify_onnx(path, collapsed)
    x1 = x[:1].numpy().astype(np.float32)
    latency = _latencies_ms({"final": onnx_path, "collapsed": path}, x1, runs)
    _say(
        f"collapse: params {receipt.params_before} -> {receipt.params_after}, max change "
        f"{receipt.max_abs_change:.2g}, ONNX parity {report.max_abs:.2g}, ORT latency (b=1) "
        f"{latency['collapsed'] * 1e3:.0f} us vs {latency['final'] * 1e3:.0f} us uncollapsed"
    )
    return {
        "params": receipt.params_after,
        "max_abs_change": receipt.max_abs_change,
        "onnx_max_abs": report.max_abs,
        "onnx_ok": report.ok,
        "latency_ms": latency,
    }


def run_demo(
    out: str | Path = "out/demo",
    *,
    epochs: int = 25,
    seed: int = 0,
    prove: bool = True,
    latency_runs: int = 300,
    cnn_epochs: int = 6,
) -> dict[str, Any]:
    """Run the demo; returns the summary (also written to ``out/summary.json``).

    ``cnn_epochs=0`` skips the CNN path."""
    from ..data import load_digits

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {}
    torch.manual_seed(seed)
    if prove:
        summary["proofs"] = _prove(out)
    surgery = _exact_surgery()
    summary["exact_surgery"] = surgery
    _say(
        "[2/6] exact surgery on a 6-hidden-layer float64 model:\n"
        + format_table(
            ["operation", "widths", "params", "hidden-to-hidden", "max |f - f_dense|"], surgery
        )
    )
    data = load_digits(seed=seed)
    x, y = data.x_test, data.y_test
    widths = [data.n_features, 128, 128, 128, data.n_classes]
    model, static, history = _train(data, widths, epochs, seed)
    trained = copy.deepcopy(model)
    y_trained = trained(x).detach()
    spectra_before = _spectra(model)
    pruned = prune_below(model, 0.1, probe=x)
    sparse = ops.sparsify(model, probe=x)
    _say(
        f"[4/6] prune_below(0.1): widths {list(pruned.widths_before)} -> {model.widths}, "
        f"max change {pruned.max_abs_change:.2g} (bound {pruned.bound:.2g}); sparsify: "
        f"params {sparse.params_before} -> {sparse.params_after}, "
        f"max change {sparse.max_abs_change:.2g}"
    )
    path = save(model, out / "model.safetensors")
    identical = bool(torch.equal(load(path)(x), model(x)))
    _say(
        f"[5/6] saved {path} ({path.stat().st_size} bytes); reloaded outputs identical: {identical}"
    )
    nets = {"static": static, "trained": trained, "final": model}
    onnx_path, report, latency = _export(nets, out, x, y, latency_runs)
    summary["collapse"] = _collapse_step(model, x, onnx_path, out, latency_runs)
    acc = {name: _accuracy(net, x, y) for name, net in nets.items()}
    change = _max_change(model(x), y_trained)
    table = _final_table(nets, acc, latency, change, report.max_abs)
    pngs = _plots(history, spectra_before, _spectra(model), out)
    summary.update(
        accuracy=acc,
        widths={"start": widths, "trained": trained.widths, "final": model.widths},
        params={name: net.count_parameters() for name, net in nets.items()},
        function_change={"prune_below": pruned.max_abs_change, "sparsify": sparse.max_abs_change},
        reload_identical=identical,
        onnx={"max_abs": report.max_abs, "ok": report.ok, "ops": report.ops},
        latency_ms=latency,
        files=[str(p) for p in (path, onnx_path, *pngs)]
        + ([str(out / "proofs.json")] if prove else []),
    )
    if cnn_epochs:  # the CNN path: buffer on channels, prune, sparsify 1x1, export, verify
        summary["cnn"] = _cnn_path(out, seed=seed, epochs=cnn_epochs, latency_runs=latency_runs)
        summary["files"].append(summary["cnn"]["onnx_file"])
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2, default=str) + "\n")
    _say("\n" + table)
    _say("\nwrote: " + ", ".join(summary["files"]) + f", {out / 'summary.json'}")
    return summary


def _prove(out: Path) -> dict[str, Any]:
    """Step 1: every SymPy claim and negative control; ``proofs.json``."""
    from isoproof.proofs.runner import run as run_proofs

    t0 = time.perf_counter()
    report = run_proofs()
    atomic_write_text(out / "proofs.json", report.to_json())
    claims = [r for r in report.results if r.kind == "claim"]
    controls = [r for r in report.results if r.kind == "control"]
    result = {
        "ok": report.ok,
        "claims": len(claims),
        "controls": len(controls),
        "seconds": time.perf_counter() - t0,
    }
    _say(
        f"[1/6] proofs: {sum(r.holds for r in claims)}/{len(claims)} claims proved, "
        f"{sum(not r.holds for r in controls)}/{len(controls)} negative controls refuted "
        f"({result['seconds']:.1f} s) -> {out / 'proofs.json'}"
    )
    if not report.ok:
        raise RuntimeError("the proofs did not all pass: see proofs.json")
    return result


def _train(
    data: Any, widths: list[int], epochs: int, seed: int
) -> tuple[IsotropicMLP, IsotropicMLP, Any]:
    """Step 3: the model with the scaffold buffer and a static twin (same initial weights)."""
    from ..train import AdaptSchedule, fit

    x, y = data.x_test, data.y_test
    model = IsotropicMLP(widths, generator=torch.Generator().manual_seed(seed))
    static = copy.deepcopy(model)  # same initial weights, trained without the scaffold buffer
    t0 = time.perf_counter()
    adapt = AdaptSchedule(buffer=5, threshold=0.95)
    history = fit(model, data, epochs=epochs, lr=3e-3, seed=seed, verbose=False, adapt=adapt)
    fit(static, data, epochs=epochs, lr=3e-3, seed=seed, verbose=False)
    _say(
        f"[3/6] trained on digits for {epochs} epochs with the scaffold buffer (5, 0.95): "
        f"widths {history.widths[0]} -> {model.widths}, test accuracy "
        f"{history.test_accuracy[-1]:.2%} (static {widths}: {_accuracy(static, x, y):.2%}; "
        f"both runs {time.perf_counter() - t0:.1f} s)"
    )
    return model, static, history


def _spectra(model: IsotropicMLP) -> list[list[float]]:
    return [ops.singular_values(model, i).tolist() for i in range(model.num_layers)]


def _export(
    nets: dict[str, IsotropicMLP], out: Path, x: torch.Tensor, y: torch.Tensor, runs: int
) -> tuple[Path, Any, dict[str, float]]:
    """Step 6: export every net, verify the final one, time all three in ONNX Runtime."""
    from isoproof.exporters import export_onnx, verify_onnx

    model = nets["final"]
    onnx_path = export_onnx(model, out / "model.onnx")
    report = verify_onnx(onnx_path, model, inputs=x, labels=y)
    x1 = x[:1].numpy().astype(np.float32)
    paths = {"final": onnx_path}
    for name in ("static", "trained"):
        paths[name] = export_onnx(nets[name], out / f"{name}.onnx")
    latency = _latencies_ms(paths, x1, runs)
    _say(
        f"[6/6] exported {onnx_path}: max |onnx - torch| {report.max_abs:.2g} over "
        f"{len(report.results)} input sets, ops {sorted(report.ops)}, verification "
        f"{'passed' if report.ok else 'FAILED'}"
    )
    return onnx_path, report, latency


_FINAL_HEADER = [
    "model",
    "test accuracy",
    "widths",
    "stored params",
    "max |logit change|",
    "ONNX parity",
    "ORT latency (b=1)",
]
_FINAL_LABELS = {
    "static": "static net, no scaffold buffer",
    "trained": "trained with scaffold buffer",
    "final": "+ prune_below(0.1) + sparsify",
}


def _final_table(
    nets: dict[str, IsotropicMLP],
    acc: dict[str, float],
    latency: dict[str, float],
    change: float,
    parity: float,
) -> str:
    rows = [
        [
            _FINAL_LABELS[name],
            f"{acc[name]:.2%}",
            net.widths,
            net.count_parameters(),
            f"{change:.2g}" if name == "final" else "-",
            f"{parity:.2g}" if name == "final" else "-",
            f"{latency[name] * 1e3:.0f} us",
        ]
        for name, net in nets.items()
    ]
    return format_table(_FINAL_HEADER, rows)


def _plots(
    history: Any, before: list[list[float]], after: list[list[float]], out: Path
) -> tuple[Path, Path]:
    """``training.png`` (accuracy and widths per epoch) and ``spectra.png`` (before / after)."""
    from .experiments.plotting import figure, save_figure

    fig, (ax1, ax2) = figure(1, 2, size=(10, 3.6))
    ax1.plot(history.epoch, [100 * a for a in history.test_accuracy], label="test")
    ax1.plot(history.epoch, [100 * a for a in history.train_accuracy], label="train")
    ax1.set(xlabel="epoch", ylabel="accuracy (%)", title="digits, scaffold buffer (5, 0.95)")
    ax1.legend()
    for h in range(len(history.widths[0]) - 2):
        ax2.plot(history.epoch, [w[h + 1] for w in history.widths], label=f"hidden {h}")
    ax2.set(xlabel="epoch", ylabel="neurons", title="widths while training")
    ax2.legend()
    training_png = save_figure(fig, out / "training.png")
    fig, axes = figure(1, 2, size=(10, 3.6))
    for ax, spectra, title in (
        (axes[0], before, "after training (scaffold buffer)"),
        (axes[1], after, "after prune_below(0.1) + sparsify"),
    ):
        for i, s in enumerate(spectra):
            ax.plot(range(1, len(s) + 1), s, marker=".", label=f"map {i}")
        ax.axhline(0.1, ls="--", c="grey", lw=1, label="0.1")
        ax.axhline(0.95, ls=":", c="grey", lw=1, label="0.95 (buffer)")
        ax.set(xlabel="neuron (sorted)", ylabel="singular value", title=title, yscale="log")
        ax.legend(fontsize=8)
    return training_png, save_figure(fig, out / "spectra.png")
