"""Deployment comparison (issue 18): a 50%-pruned isoproof file against Torch-Pruning's.

``[784, 1024 x 3, 10]`` isotropic MLP with non-zero biases and psi, and its tanh twin
(:func:`~isoproof.standard.paired_standard`: same weights). isoproof removes half of every hidden
layer (``isoproof.prune``, smallest singular values first) and, as a second file, also sparsifies
it; Torch-Pruning's ``MagnitudePruner`` removes half of the tanh MLP's hidden neurons. All three
files are ``[784, 512 x 3, 10]``; each is exported, verified against its model, then timed in ONNX
Runtime (CPU, 1 thread), the files interleaved call by call, at batch 1 and 64. Ratio = file /
Torch-Pruning's file in the same column. Untrained weights: latency does not depend on the values.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from isoproof.exporters import export_onnx, verify_onnx
from isoproof.exporters.runtime import interleaved_medians, ort_session
from torch import nn

import isoproof as ip
from isoproof.standard import paired_standard, widths_of
from isoproof.table import markdown_table

from ._common import record
from ._models import tp_magnitude_pruner, trained_like

WIDTHS = [784, 1024, 1024, 1024, 10]
RUNS = 200


def models(seed: int = 0) -> dict[str, nn.Module]:
    """The three ``[784, 512 x 3, 10]`` models: isoproof pruned, pruned + sparsified, TP's."""
    iso = trained_like(WIDTHS, seed)
    tanh = paired_standard(iso, strict=False)  # the same weights; tanh has no psi
    pruned = copy.deepcopy(iso)
    for h in range(len(WIDTHS) - 2):
        ip.prune(pruned, h, WIDTHS[h + 1] // 2)
    sparse = copy.deepcopy(pruned)
    ip.sparsify(sparse)
    tp_magnitude_pruner(tanh, torch.randn(2, WIDTHS[0]), 0.5).step()
    return {
        "isoproof pruned": pruned,
        "isoproof pruned + sparsified": sparse,
        "Torch-Pruning": tanh,
    }


def measure(files: dict[str, nn.Module], runs: int = RUNS) -> dict[str, dict[str, Any]]:
    """Export, verify and time every model (interleaved ORT medians, seconds)."""
    out: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="isoproof-deploy-") as tmp:
        sessions = {}
        for k, (name, model) in enumerate(files.items()):
            path = export_onnx(model, Path(tmp) / f"{k}.onnx", input_width=WIDTHS[0])
            report = verify_onnx(path, model, latency_runs=0, raise_on_failure=False)
            widths = widths_of(model)
            out[name] = {"verified": report.ok, "max_abs_error": report.max_abs,
                         "stored": ip.count_parameters(model), "widths": widths,
                         "bytes": path.stat().st_size}  # fmt: skip
            sessions[name] = ort_session(path, threads=1)
        x = np.random.default_rng(0).standard_normal((64, WIDTHS[0])).astype("float32")
        for b in (1, 64):
            calls = {
                n: (lambda s=s, xb=x[:b]: s.run(None, {"input": xb})) for n, s in sessions.items()
            }
            for name, seconds in interleaved_medians(calls, runs).items():
                out[name][f"batch{b}"] = seconds
    return out


def _cell(r: dict[str, Any], ref: dict[str, Any], b: int) -> str:
    return f"{1e3 * r[f'batch{b}']:.3f} ({r[f'batch{b}'] / ref[f'batch{b}']:.2f})"


def render(result: dict[str, dict[str, Any]]) -> str:
    """The ``docs/benchmarks.md`` section, every number from ``result``."""
    ref = result["Torch-Pruning"]
    rows = [
        [name, str(r["widths"]), f"{r['stored']:,}", f"{r['bytes'] / 2**20:.2f}",
         f"{r['max_abs_error']:.1e}" + ("" if r["verified"] else " (FAILED)"),
         *(_cell(r, ref, b) for b in (1, 64))]
        for name, r in result.items()
    ]  # fmt: skip
    table = markdown_table(
        ["file", "widths", "stored", "MiB", "ONNX parity", "ms b1 (ratio)", "ms b64 (ratio)"],
        rows,
    )
    lines = [
        f"- {name}: {r['batch1'] / ref['batch1']:.2f}x (batch 1) and "
        f"{r['batch64'] / ref['batch64']:.2f}x (batch 64) Torch-Pruning's latency, "
        f"{r['stored'] / ref['stored']:.2f}x its stored numbers"
        for name, r in result.items()
        if name != "Torch-Pruning"
    ]
    setup = (
        f"From `{WIDTHS}` (isotropic, spread singular values, non-zero biases and psi, and its "
        "tanh twin with the same weights) to `[784, 512 x 3, 10]`: `isoproof.prune` on every "
        "hidden layer (and `sparsify` for the second file), Torch-Pruning's `MagnitudePruner` "
        f"at ratio 0.5 on the tanh MLP. Medians of {RUNS} calls per cell, the files interleaved "
        "call by call; ratio = file / Torch-Pruning's file."
    )
    title = "## Deployment: 50%-pruned files, isoproof vs Torch-Pruning (ORT CPU, 1 thread)"
    return f"{title}\n\n{setup}\n\n{table}\n\n" + "\n".join(lines)


def main(argv: list[str]) -> int:
    result = measure(models())
    text = render(result)
    record("deploy", text, {"widths": WIDTHS, "runs": RUNS, "files": result})
    print(text)
    return 0
