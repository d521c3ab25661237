"""Collapse (``isoproof.collapse``, GitHub issue 13): stored numbers, precision and ORT latency.

Models (float32, seeded orthogonal init): ``[64, w x 4, 10]`` for ``w = 128 .. 2048`` and
``[784, 1024 x 8, 10]``. Variants: ``dense``, ``collapsed`` (:func:`isoproof.collapse`),
``sparsified`` (:func:`isoproof.sparsify`) and ``pruned-half`` (every hidden layer pruned to half
width, :func:`isoproof.prune`); the last three share ``benchmarks.bench_latency.build_models``.
Every file is exported with :func:`exporters.export_onnx`; the collapsed file is verified
(:func:`verify_onnx`, max error recorded) before it is timed (the other variants' exports are
verified by ``bench_latency``). Results are rewritten after every model.

Timing: onnxruntime CPU provider, 1 intra-op thread, batch 1 and 64; after a warm-up each variant
is called once per round, variants in turn (``rounds = runs``: interleaved call by call), so the
load of the shared machine hits every variant alike; medians are reported and ratios are taken
within one run. Target: for ``[64, 1024 x 4, 10]`` at batch 64, collapsed <= 1/10 of dense.

Precision (the choice of the norm's form, ``docs/method.md`` §2.1): on
:func:`isoproof.testing.adversarial_inputs` of a ``[64, 1024 x 4, 10]`` model with non-zero
biases and psi, the max error against the float64 forward of the dense float32 forward, of the
collapsed model (orthonormal basis form) and of the expanded quadratic ("Gram") form.

Writes ``benchmarks/results/collapse.json``, the ``collapse`` section of ``docs/benchmarks.md``,
``docs/results/collapse.md`` (table included in the README between markers),
``docs/results/collapse.png`` (collapsed latency against hidden width).
Run: ``python -m benchmarks collapse`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from isoproof.exporters import export_onnx, verify_onnx
from isoproof.exporters.runtime import interleaved_medians, ort_session

import isoproof as ip
from isoproof.collapse import factors
from isoproof.files import atomic_write_text
from isoproof.table import markdown_table
from isoproof.testing import adversarial_inputs

from ._common import ROOT, machine, machine_line, record
from .bench_latency import build_models

WIDTHS = [[64, w, w, w, w, 10] for w in (128, 256, 512, 1024, 2048)] + [[784] + [1024] * 8 + [10]]
TARGET = ([64, 1024, 1024, 1024, 1024, 10], 64)  # collapsed <= 1/10 of dense here
VARIANTS = ("dense", "collapsed", "sparsified", "pruned-half")
BATCHES = (1, 64)
SNIPPET = ROOT / "docs" / "results" / "collapse.md"
PLOT = ROOT / "docs" / "results" / "collapse.png"
README = ROOT / "README.md"


def _name(widths: list[int]) -> str:
    hidden = widths[1:-1]
    return f"[{widths[0]}, {hidden[0]} x {len(hidden)}, {widths[-1]}]"


def variants(widths: list[int]) -> dict[str, torch.nn.Module]:
    models = build_models(widths)
    models.pop("masked")
    models["collapsed"] = ip.collapse(models["dense"])[0]
    return {name: models[name] for name in VARIANTS}


def stored(model: torch.nn.Module) -> int:
    return int(model.count_parameters())  # type: ignore[operator]


def time_widths(widths: list[int], runs: int, tmp: Path) -> dict:
    """Export, verify and time every variant of ``widths``; one interleaved run per batch."""
    models = variants(widths)
    entry: dict = {"widths": widths, "variants": {}}
    paths = {}
    for name, model in models.items():
        paths[name] = export_onnx(model, tmp / f"{name}.onnx")
        entry["variants"][name] = {"stored": stored(model)}
    # the collapsed file is verified here; the others' exports are verified by bench_latency
    entry["collapsed_onnx_max_abs"] = verify_onnx(paths["collapsed"], models["collapsed"]).max_abs
    x64 = np.random.default_rng(0).standard_normal((64, widths[0])).astype(np.float32)
    for batch in BATCHES:
        sessions = {name: ort_session(p, threads=1) for name, p in paths.items()}
        calls = {
            n: (lambda s=s, x=x64[:batch]: s.run(None, {"input": x})) for n, s in sessions.items()
        }
        medians = interleaved_medians(calls, runs, rounds=runs)
        for name, seconds in medians.items():
            entry["variants"][name][f"batch{batch}_s"] = seconds
    line = ", ".join(
        f"{n} {v['stored']} / {v['batch1_s'] * 1e3:.3f} / {v['batch64_s'] * 1e3:.3f} ms"
        for n, v in entry["variants"].items()
    )
    print(f"  {_name(widths)}: {line}", flush=True)
    return entry


def gram_forward(model: ip.IsotropicMLP, x: torch.Tensor) -> torch.Tensor:
    """The expanded quadratic form (the issue's prototype), in ``x``'s dtype: the comparator."""
    *hidden, (m_out, u_out) = factors(model)
    dtype = x.dtype
    coeffs: list[torch.Tensor] = []
    for (m, u), act in zip(hidden, model.activations, strict=True):
        k = torch.cat([m, u], dim=1)
        gram = (k.T @ k).to(dtype)
        v = _stacked_coefficients(x, coeffs)
        o = act.o.detach().to(dtype)
        n = torch.sqrt(torch.clamp_min(o + ((v @ gram) * v).sum(-1, keepdim=True), act.eps**2))
        gain = model.radial.gain(n)
        coeffs = [gain * c for c in coeffs] + [gain]
    return _stacked_coefficients(x, coeffs) @ torch.cat([m_out, u_out], dim=1).to(dtype).T


def _stacked_coefficients(x: torch.Tensor, coeffs: list[torch.Tensor]) -> torch.Tensor:
    """``v = [c_0 x; c_0; ...; c_{l-1}; 1]`` so that ``z_l = [M_l | U_l] v``."""
    one = torch.ones_like(x[..., :1])
    if not coeffs:
        return torch.cat([x, one], dim=-1)
    return torch.cat([coeffs[0] * x, *coeffs, one], dim=-1)


def precision(widths: list[int]) -> dict:
    """Max error vs the float64 forward, per adversarial set, for each evaluation."""
    gen = torch.Generator().manual_seed(1)
    model = ip.IsotropicMLP(widths, init="kaiming", dtype=torch.float64, generator=gen)
    with torch.no_grad():
        for p in model.psi:
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64))
    model.eval()
    c64, c32 = ip.collapse(model)[0], ip.collapse(model, dtype=torch.float32)[0]
    m32 = ip.IsotropicMLP.from_config({**model.config(), "dtype": "float32"}).eval()
    m32.load_state_dict({k: v.float() for k, v in model.state_dict().items()})
    evals = {
        "dense float32": lambda x: m32(x.float()),
        "collapsed float32 (orthonormal)": lambda x: c32(x.float()),
        "Gram form float32": lambda x: gram_forward(model, x.float()),
        "collapsed float64 (orthonormal)": c64,
        "Gram form float64": lambda x: gram_forward(model, x),
    }
    out: dict = {"widths": widths, "sets": {}}
    with torch.no_grad():
        for name, x in adversarial_inputs(model.linears[0], 32, generator=gen).items():
            truth = model(x)
            scale = max(1.0, float(truth.abs().max()))
            errs = {k: _error(f(x), truth) / scale for k, f in evals.items()}
            out["sets"][name] = errs
    out["worst"] = {k: max(s[k] for s in out["sets"].values()) for k in evals}
    return out


def _error(y: torch.Tensor, truth: torch.Tensor) -> float:
    """``max |y - truth|``, ``inf`` if ``y`` has a NaN/Inf (the Gram form overflows)."""
    err = float((y.double() - truth).abs().max())
    return err if np.isfinite(err) else float("inf")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks collapse")
    parser.add_argument("--runs", type=int, default=60, help="timed calls per variant and batch")
    parser.add_argument("--quick", action="store_true", help="two small models, 10 runs")
    args = parser.parse_args(argv or [])
    configs = WIDTHS[:2] if args.quick else WIDTHS
    runs = 10 if args.quick else max(args.runs, 1)
    print(f"collapse: {len(configs)} models x {len(VARIANTS)} variants (1 thread, interleaved)")
    t0 = time.perf_counter()
    prec = precision(TARGET[0] if not args.quick else configs[0])
    with tempfile.TemporaryDirectory(prefix="isoproof-collapse-") as tmp:
        entries = []
        for widths in configs:
            sub = Path(tmp) / "_".join(map(str, [*widths[:2], len(widths)]))
            sub.mkdir()
            entries.append(time_widths(widths, runs, sub))
            md = _write(entries, prec, runs)  # after every model: a partial run leaves results
    print(md)
    print(f"collapse: done in {time.perf_counter() - t0:.0f} s")
    return 0


def _write(entries: list[dict], prec: dict, runs: int) -> str:
    data = {"runs": runs, "threads": 1, "models": entries, "precision": prec}
    data["target"] = _target(entries)
    md = report(data, machine_line(machine()))
    record("collapse", md, data)
    atomic_write_text(SNIPPET, md + "\n")
    _readme(_table(entries))
    _plot(entries)
    return md


def _target(entries: list[dict]) -> dict:
    for e in entries:
        if e["widths"] == TARGET[0]:
            v = e["variants"]
            key = f"batch{TARGET[1]}_s"
            ratio = v["collapsed"][key] / v["dense"][key]
            return {"widths": TARGET[0], "batch": TARGET[1], "ratio": ratio, "met": ratio <= 0.1}
    return {"widths": TARGET[0], "batch": TARGET[1], "ratio": None, "met": None}


def _table(entries: list[dict]) -> str:
    rows = []
    for e in entries:
        v = e["variants"]
        cells = []
        for name in VARIANTS:
            r = v[name]["stored"] / v["dense"]["stored"]
            cells.append(f"{v[name]['stored']:,} ({r:.3g})")
        for batch in BATCHES:
            key = f"batch{batch}_s"
            d = v["dense"][key]
            cells.append(
                f"{d * 1e3:.3g} / {v['collapsed'][key] * 1e3:.3g} ({v['collapsed'][key] / d:.2g})"
            )
        rows.append([_name(e["widths"]), *cells])
    headers = ["widths", *[f"stored: {n}" for n in VARIANTS]] + [
        f"ORT ms b{b}: dense / collapsed (ratio)" for b in BATCHES
    ]
    return markdown_table(headers, rows)


def report(data: dict, machine_text: str) -> str:
    """The markdown section (every number read from ``data``)."""
    entries, prec, target = data["models"], data["precision"], data["target"]
    lat_rows = []
    for e in entries:
        for batch in BATCHES:
            key = f"batch{batch}_s"
            d = e["variants"]["dense"][key]
            cells = [
                f"{e['variants'][n][key] * 1e3:.3g} ({e['variants'][n][key] / d:.2g})"
                for n in VARIANTS
            ]
            lat_rows.append([_name(e["widths"]), batch, *cells])
    lat = markdown_table(["widths", "batch", *[f"{n} ms (ratio)" for n in VARIANTS]], lat_rows)
    sets = list(prec["sets"])
    prec_rows = [
        [k, *[f"{prec['sets'][s][k]:.2g}" for s in sets], f"{prec['worst'][k]:.2g}"]
        for k in prec["worst"]
    ]
    prec_table = markdown_table(["evaluation", *sets, "worst"], prec_rows)
    w = prec["worst"]
    better = (
        "orthonormal" if w["collapsed float32 (orthonormal)"] <= w["Gram form float32"] else "Gram"
    )
    if target["ratio"] is None:
        verdict = "target model not in this run"
    else:
        verdict = (
            f"collapsed / dense latency at batch {target['batch']} for "
            f"{_name(target['widths'])}: {target['ratio']:.3g} "
            f"({'met' if target['met'] else 'MISSED'}: target <= 0.1)"
        )
    return (
        "## Collapse: stored numbers and ONNX Runtime latency (float32, 1 thread)\n\n"
        f"Stored numbers (ratio to dense) and ORT CPU latency, median of {data['runs']} calls per "
        "cell after warm-up, the variants interleaved call by call (the machine is shared and "
        "was loaded: compare ratios, which are taken within one run). Every collapsed file was "
        "verified against its model before timing (max ONNX error "
        f"{max(e['collapsed_onnx_max_abs'] for e in entries):.2g}).\n\n"
        + _table(entries)
        + "\n\nAll variants (latency ms, ratio to dense in the same row):\n\n"
        + lat
        + f"\n\nTarget: {verdict}.\n\n"
        + "### Precision of the norm's form\n\n"
        f"Max |error| / max(1, max|y|) against the float64 forward of {_name(prec['widths'])} "
        "(non-zero biases and psi) on `isoproof.testing.adversarial_inputs` (32 rows each):\n\n"
        + prec_table
        + "\n\nWorst case in float32: orthonormal form "
        f"{w['collapsed float32 (orthonormal)']:.2g}, "
        f"Gram form {w['Gram form float32']:.2g}, dense forward {w['dense float32']:.2g}; "
        f"isoproof keeps the {better} form.\n\n_{machine_text}_"
    )


def _readme(table: str) -> None:
    begin, end = "<!-- collapse-table -->", "<!-- /collapse-table -->"
    text = README.read_text()
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        atomic_write_text(README, head + begin + "\n" + table + "\n" + end + rest.split(end, 1)[1])


def _plot(entries: list[dict]) -> None:
    try:
        from isoproof.app.experiments.plotting import figure, save_figure
    except ImportError:
        return
    narrow = [e for e in entries if e["widths"][0] == 64]
    fig, (ax,) = figure(size=(5.0, 3.4))
    widths = [e["widths"][1] for e in narrow]
    for batch, style in zip(BATCHES, ("o-", "s-"), strict=True):
        for name, colour in (("collapsed", "C0"), ("dense", "C3")):
            ms = [e["variants"][name][f"batch{batch}_s"] * 1e3 for e in narrow]
            ax.plot(widths, ms, style, color=colour, label=f"{name}, batch {batch}")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("hidden width w of [64, w x 4, 10]")
    ax.set_ylabel("ORT latency, ms (median)")
    ax.legend(fontsize=7)
    save_figure(fig, PLOT)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
