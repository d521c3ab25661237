"""``python -m benchmarks compression_cnn``: the CNN track (:mod:`benchmarks.compression_cnn`)."""

from __future__ import annotations

from ._common import record
from .compression_cnn import SETTINGS, run


def _table(result: dict) -> str:
    lat = result["latency"]
    lines = [
        "| method | budget | stored numbers | acc, no fine-tune (%) | acc, 2-epoch fine-tune (%) "
        "| ORT b=1 (us) | ORT b=64 (us) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["summary"]:
        key = {"dense (iso)": "dense isotropic", "dense (tanh)": "dense tanh"}.get(
            r["method"], f"{r['method']} {r['budget']:g}"
        )
        t = lat.get(key, {})
        b1 = f"{1e6 * t['batch1']:.0f}" if "batch1" in t else "-"
        b64 = f"{1e6 * t['batch64']:.0f}" if "batch64" in t else "-"
        ft = "-" if r["accuracy_ft"] is None else f"{r['accuracy_ft']:.2f}"
        lines.append(
            f"| {r['method']} | {r['budget']:.0%} | {r['params']:.0f} | {r['accuracy']:.2f} | "
            f"{ft} | {b1} | {b64} |"
        )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    result = run(SETTINGS)
    text = (
        "## Compression, CNN track (digits [1, 8, 8])\n\n"
        f"Settings: {result['settings']}. Methods: see `benchmarks/compression_cnn.py`.\n\n"
        + _table(result)
    )
    record("compression_cnn", text, result)
    print(text)
    return 0
