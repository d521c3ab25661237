"""``python -m benchmarks compression_cnn``: the CNN track (:mod:`benchmarks.compression_cnn`)."""

from __future__ import annotations

from ._common import ROOT, record, replace_section
from .compression_cnn import SETTINGS, run


def _table(result: dict) -> str:
    lat = result["latency"]
    lines = [
        "| method | budget | stored numbers | acc, no fine-tune (%) | range over seeds "
        "| acc, 2-epoch fine-tune (%) | ORT b=1 (us) | ORT b=64 (us) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result["summary"]:
        key = {"dense (iso)": "dense isotropic", "dense (tanh)": "dense tanh"}.get(
            r["method"], f"{r['method']} {r['budget']:g}"
        )
        t = lat.get(key, {})
        b1 = f"{1e6 * t['batch1']:.0f}" if "batch1" in t else "-"
        b64 = f"{1e6 * t['batch64']:.0f}" if "batch64" in t else "-"
        ft = "-" if r["accuracy_ft"] is None else f"{r['accuracy_ft']:.2f}"
        lo, hi = r["accuracy_range"]
        lines.append(
            f"| {r['method']} | {r['budget']:.0%} | {r['params']:.0f} | {r['accuracy']:.2f} | "
            f"{lo:.2f}-{hi:.2f} | {ft} | {b1} | {b64} |"
        )
    return "\n".join(lines)


def _findings(result: dict) -> str:
    """One line per budget: accuracy lost against each family's dense model (means over seeds)."""
    by = {(r["method"], r["budget"]): r for r in result["summary"]}
    dense = {"isoproof": by[("dense (iso)", 1.0)], "tanh": by[("dense (tanh)", 1.0)]}
    seeds = len(result["settings"]["seeds"])
    lines = [f"Accuracy lost against the dense model of the same family, mean of {seeds} seeds "
             "(no fine-tune; after the 2-epoch fine-tune in brackets):", ""]  # fmt: skip
    for b in result["settings"]["budgets"]:
        parts = []
        for method in ("isoproof", "tp-magnitude", "magnitude"):
            r, d = by[(method, b)], dense["isoproof" if method == "isoproof" else "tanh"]
            parts.append(f"{method} {d['accuracy'] - r['accuracy']:+.2f} pp "
                         f"({d['accuracy'] - r['accuracy_ft']:+.2f})")  # fmt: skip
        lines.append(f"- {b:.0%} of the stored numbers: " + ", ".join(parts))
    return "\n".join(lines)


def readme_line(result: dict) -> str:
    """The README's limitation line, computed from the result."""
    by = {(r["method"], r["budget"]): r for r in result["summary"]}
    iso, tanh = by[("dense (iso)", 1.0)]["accuracy"], by[("dense (tanh)", 1.0)]["accuracy"]
    half = {m: by[(m, 0.5)]["accuracy"] for m in ("isoproof", "tp-magnitude")}
    low = {m: by[(m, 0.1)]["accuracy"] for m in ("isoproof", "tp-magnitude")}
    return (
        f"* **CNN compression** (`docs/benchmarks.md`, digits, {len(result['settings']['seeds'])} "
        f"seeds, no fine-tune): the dense isotropic CNN starts at {iso:.1f}% vs {tanh:.1f}% for "
        f"its tanh twin; at 50% of the stored numbers isoproof keeps {half['isoproof']:.1f}% "
        f"and Torch-Pruning's magnitude pruner {half['tp-magnitude']:.1f}%, at 10% "
        f"{low['isoproof']:.1f}% vs {low['tp-magnitude']:.1f}%."
    )


def render(result: dict) -> str:
    """The ``docs/benchmarks.md`` section for ``result``."""
    return (
        "## Compression, CNN track (digits [1, 8, 8])\n\n"
        f"Settings: {result['settings']}. Methods: see `benchmarks/compression_cnn.py`.\n\n"
        + _table(result)
        + "\n\n"
        + _findings(result)
    )


def main(argv: list[str]) -> int:
    result = run(SETTINGS)
    text = render(result)
    record("compression_cnn", text, result)
    replace_section(ROOT / "README.md", "compression_cnn", readme_line(result))
    print(text)
    return 0
