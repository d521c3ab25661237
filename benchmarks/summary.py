"""The README's benchmark table, computed from ``benchmarks/results/*.json`` (never typed in).

:func:`benchmarks._common.record` refreshes it after every benchmark run, so each row shows the
latest result of its benchmark with that run's machine and date; ``tests/test_bench_summary.py``
checks that the README holds exactly :func:`render` of the stored results.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from isoproof.table import markdown_table

__all__ = ["ROWS", "render"]

RESULTS = Path(__file__).resolve().parent / "results"
DOCS_RESULTS = Path(__file__).resolve().parent.parent / "docs" / "results"
Result = dict[str, Any]


def _prune(d: Result) -> tuple[str, str]:
    ratios = [r["ratio_to_single"] for r in d["rows"]]
    last = d["rows"][-1]
    return (
        f"`prune(n=k)` vs k single removals, {d['widths'][2]}-wide layer",
        f"one call = {min(ratios):.2f}-{max(ratios):.2f}x a single removal for k = "
        f"{', '.join(str(r['k']) for r in d['rows'])} (target <= 1.3x); "
        f"{last['k_single_calls_s'] / last['one_call_s']:.0f}x faster than "
        f"{last['k']} single calls",
    )


def _latency(d: Result) -> tuple[str, str]:
    v = d["variants"]

    def cells(name: str) -> str:
        r = v[name]
        b1, b64 = r["batch1_threads1"]["latency_ratio"], r["batch64_threads1"]["latency_ratio"]
        return f"{name} (parameter ratio {r['param_ratio']:.2f}): {b1:.2f} (b1), {b64:.2f} (b64)"

    widths = d["widths"]
    return (
        f"ORT CPU latency ratio to dense, `[{widths[0]}, {widths[1]} x {len(widths) - 2}, "
        f"{widths[-1]}]`, 1 thread",
        "; ".join(cells(n) for n in ("sparsified", "pruned-half", "masked")) + " (the control)",
    )


def _span(values: list[float]) -> str:
    lo, hi = f"{min(values):.2f}", f"{max(values):.2f}"
    return lo if lo == hi else f"{lo}-{hi}"


def _activation(d: Result) -> tuple[str, str]:
    rows = {(r["engine"], r["widths"][1], r["kind"]): r["ratio"] for r in d["rows"]}
    default = ("iso b1", "iso b64")  # the default export (not the o=0 or fewest-node variants)
    ort_small = [r["ratio"] for r in d["rows"] if r["engine"] == "onnxruntime"
                 and r["widths"][1] <= 128 and r["kind"] in default]  # fmt: skip
    ort_wide = [r["ratio"] for r in d["rows"] if r["engine"] == "onnxruntime"
                and r["widths"][1] >= 1024 and r["kind"] in default]  # fmt: skip
    eager = ("torch eager", 128)
    return (
        "isotropic activation vs tanh (same weights; torch eager, ORT)",
        f"eager forward b1 at 128 wide {rows[(*eager, 'forward b1')]:.2f}x (target <= 2); "
        f"training step b64 {rows[(*eager, 'step b64')]:.2f}x at 128 wide (target <= 1.3), "
        f"{rows[('torch eager', 1024, 'step b64')]:.2f}x at 1024 wide (<= 1.05); ORT (default "
        "export) "
        f"{_span(ort_small)}x at 64-128 wide (<= 1.3), {_span(ort_wide)}x at 1024 wide (<= 1.03)",
    )


def _resize_cost(d: Result) -> tuple[str, str]:
    worst = max(d["operations"], key=lambda r: r["ratio"])
    tp, sv, mem = d["torch_pruning"], d["svdvals"], d["sparsify_memory"]
    return (
        "resizing `[784, 1024 x 8, 10]` at the cost of its factorisations",
        f"worst total / factorisations {worst['ratio']:.2f}x ({worst['operation']}; target "
        f"<= 1.3); 50% prune {tp['ratio']:.1f}x Torch-Pruning's `step()` (target 15x; the "
        f"float64 factorisations alone are {tp['factorisation_s'] / tp['torch_pruning_s']:.0f}x); "
        f"`prune(n=8)` at {sv['width']} wide {sv['ratio']:.2f}x one `svdvals` (<= 1.5); "
        f"`sparsify` extra peak {mem['ratio']:.2f}x the model (<= 2.5; one float64 SVD alone "
        f"{mem['svd_ratio']:.2f}x)",
    )


def _deploy(d: Result) -> tuple[str, str]:
    f = d["files"]
    ref = f["Torch-Pruning"]

    def ratio(name: str) -> str:
        r = f[name]
        return f"{r['batch1'] / ref['batch1']:.2f} (b1) / {r['batch64'] / ref['batch64']:.2f} (b64)"

    return (
        "50%-pruned `[784, 512 x 3, 10]` ONNX files vs Torch-Pruning's (latency ratio)",
        f"isoproof pruned {ratio('isoproof pruned')}; pruned + sparsified "
        f"{ratio('isoproof pruned + sparsified')} at "
        f"{f['isoproof pruned + sparsified']['stored'] / ref['stored']:.2f}x the stored numbers",
    )


def _distributed(d: Result) -> tuple[str, str]:
    return (
        f"one synchronised `adapt`, {d['widths']}, 2 gloo processes vs one process",
        f"{d['ratio']:.2f}x ({d['synchronised_median_s']:.0f} s vs {d['plain_median_s']:.0f} s "
        f"per call, medians of {d['repeats']} interleaved rounds: one run's ratio)",
    )


def _compression(d: Result) -> tuple[str, str]:
    """From the full result the benchmark writes beside its summary (``docs/results``)."""
    full = json.loads((DOCS_RESULTS / "compression.json").read_text(encoding="utf-8"))
    rows = {(r["data"], r["method"], r["budget"]): r for r in full["summary"]}
    parts = []
    for v in (v for v in d["verdicts"] if v["budget"] == 0.5):
        iso, std = rows[(v["data"], "isoproof", 1.0)], rows[(v["data"], "tp-standard", 1.0)]
        parts.append(f"{v['data']}: isoproof loses {v['isoproof_loss']:.2f} pp, Torch-Pruning "
                     f"(standard MLP) {v['tp_standard_loss']:.2f} pp; dense "
                     f"{iso['dense_accuracy']:.1f}% vs {std['dense_accuracy']:.1f}%")  # fmt: skip
    return (
        f"MLP compression at 50% of the stored numbers, no fine-tune, "
        f"{len(full['settings']['seeds'])} seeds",
        "; ".join(parts) + " (losses against each family's dense model, which start apart: "
        "docs/results/compression.md)",
    )


def _compression_cnn(d: Result) -> tuple[str, str]:
    by = {(r["method"], r["budget"]): r["accuracy"] for r in d["summary"]}
    dense = {"isoproof": by[("dense (iso)", 1.0)], "tp-magnitude": by[("dense (tanh)", 1.0)]}

    def loss(method: str, b: float) -> str:
        return f"{dense[method] - by[(method, b)]:.2f}"

    return (
        f"CNN compression (digits), no fine-tune, {len(d['settings']['seeds'])} seeds",
        f"accuracy lost at 50% / 10%: isoproof {loss('isoproof', 0.5)} / {loss('isoproof', 0.1)} "
        f"pp, Torch-Pruning on the tanh CNN {loss('tp-magnitude', 0.5)} / "
        f"{loss('tp-magnitude', 0.1)} pp (dense: {dense['isoproof']:.1f}% vs "
        f"{dense['tp-magnitude']:.1f}%)",
    )


ROWS: dict[str, Callable[[Result], tuple[str, str]]] = {
    "prune": _prune,
    "resize_cost": _resize_cost,
    "activation": _activation,
    "latency": _latency,
    "deploy": _deploy,
    "compression": _compression,
    "compression_cnn": _compression_cnn,
    "distributed": _distributed,
}
"""Benchmark name -> its README row (what, result) from the stored JSON."""


def render(results: Path = RESULTS) -> str:
    """The README table: one row per stored result, with its machine and date."""
    rows = []
    for name, row in ROWS.items():
        path = results / f"{name}.json"
        if not path.is_file():
            continue
        data = json.loads(path.read_text(encoding="utf-8"))
        what, result = row(data)
        m = data["machine"]
        rows.append([what, result, f"{m['cpu']}, {m['date'][:10]}"])
    return markdown_table(["benchmark", "result", "measured on"], rows)
