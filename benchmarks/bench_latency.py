"""ONNX Runtime CPU latency of resized models vs their parameter count (GitHub issue 5).

Model ``[784, 1024 x 8, 10]`` (float32, random orthogonal init), exported with
:func:`exporters.export_onnx` (dynamic batch) and verified before timing. Variants:

* ``dense``: the model as is;
* ``masked``: the control: the 512 neurons that pruning removes are zeroed (their rows, biases and
  psi entries, and their outgoing columns) but kept, so every matrix keeps its shape;
* ``sparsified``: :func:`isoproof.sparsify` (maps 1, 3, 5, 7 diagonal: ``Mul`` + ``Add``);
* ``pruned-half``: every hidden layer pruned to 512 neurons with :func:`isoproof.prune`;
* ``int8``: :func:`exporters.quantize_int8` (dynamic) of the dense file.

Timing: onnxruntime CPU provider, 1 intra-op thread and all threads (0 = onnxruntime's default),
batch 1 and 64; after a warm-up, ``--runs`` calls per variant (default 200) taken in interleaved
rounds (every variant runs a slice of its calls in each round), so load from other processes on
a shared machine hits all variants alike; the median is reported. Target: a resized model's
latency ratio within 10% of its parameter ratio (the memory-bound limit); masked shows no gain.

Run: ``python -m benchmarks latency`` (``--quick`` for a small smoke run).
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from isoproof.exporters import export_onnx, quantize_int8, verify_onnx
from isoproof.exporters.runtime import interleaved_medians, ort_session

import isoproof as ip
from isoproof.table import format_table, markdown_table

from ._common import record

WIDTHS = [784] + [1024] * 8 + [10]
VARIANTS = ("dense", "masked", "sparsified", "pruned-half", "int8")
RESIZED = ("sparsified", "pruned-half")
CONFIGS = [(1, 1), (1, 0), (64, 1), (64, 0)]  # (batch, threads); 0 threads = all (ORT default)
TARGET_SLACK = 0.1  # a resized model's latency ratio within 10% of its parameter ratio


def build_models(widths: list[int]) -> dict[str, ip.IsotropicMLP]:
    """The float32 torch variants (int8 is derived from the dense ONNX file)."""
    dense = ip.IsotropicMLP(widths, generator=torch.Generator().manual_seed(0))
    half = widths[1] // 2
    masked = copy.deepcopy(dense)
    with torch.no_grad():
        for h in range(len(widths) - 2):  # zero neurons half.. of every hidden layer, keep them
            masked.linears[h].weight[half:] = 0.0
            masked.linears[h].bias[half:] = 0.0
            if h >= 1:
                masked.psi[h - 1][half:] = 0.0
            masked.linears[h + 1].weight[:, half:] = 0.0
    sparse = copy.deepcopy(dense)
    ip.sparsify(sparse)
    pruned = copy.deepcopy(dense)
    for h in reversed(range(len(widths) - 2)):  # last hidden layer first (psi errors, §4)
        ip.prune(pruned, h, n=widths[h + 1] - half)
    return {"dense": dense, "masked": masked, "sparsified": sparse, "pruned-half": pruned}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks latency")
    parser.add_argument("--runs", type=int, default=200, help="timed calls per variant/config")
    parser.add_argument("--quick", action="store_true", help="small model, 20 runs (smoke run)")
    args = parser.parse_args(argv or [])
    widths = [64] + [128] * 4 + [10] if args.quick else WIDTHS
    runs = 20 if args.quick else max(args.runs, 1)

    print(f"latency: building variants of {widths} (shared machine: medians, compare ratios)")
    models = build_models(widths)
    params = {name: m.count_parameters() for name, m in models.items()}
    params["int8"] = params["dense"]
    with tempfile.TemporaryDirectory(prefix="isoproof-bench-") as tmp:
        paths = _export_verified(models, Path(tmp))
        rng = np.random.default_rng(0)
        x64 = rng.standard_normal((64, widths[0])).astype(np.float32)
        dense_logits = ort_session(paths["dense"]).run(None, {"input": x64})[0]
        int8_logits = ort_session(paths["int8"]).run(None, {"input": x64})[0]
        int8_change = float(np.abs(int8_logits - dense_logits).max())
        sizes = {name: p.stat().st_size for name, p in paths.items()}
        medians = _time_all(paths, x64, runs)

    data, rows, verdicts = _summarise(medians, params, sizes)
    headers = ["variant", "stored params", "param ratio", "file MiB"] + [
        f"b{b}/{t or 'all'}t ms (ratio)" for b, t in CONFIGS
    ]
    md = (
        f"## ONNX Runtime CPU latency of resized models ({widths}, float32)\n\n"
        f"Median of {runs} calls per cell after warm-up, interleaved rounds; `b64/1t` = batch 64, "
        "1 intra-op thread, `all` = onnxruntime's default thread count. Ratio = latency / dense "
        "latency in the same column. int8 = dynamic quantisation of the dense file "
        f"(max |logit change| {int8_change:.3g} on random inputs; this model is untrained, the "
        "accuracy cost is measured on digits in `tests/test_export_edge.py`).\n\n"
        + markdown_table(headers, rows)
        + f"\n\nTarget: a resized model's latency ratio within {TARGET_SLACK:.0%} of its parameter "
        "ratio; the "
        "masked control must show no gain.\n\n"
        + "\n".join(f"- {v}" for v in verdicts)
        + f"\n\nReading the numbers: the last-level cache here is {_l3_cache()}. At batch 1 a "
        "resized file that fits in it runs from cache while the dense one streams from memory, "
        'so resized models can beat their parameter ratio ("MISSED (faster)"). At batch 64 '
        "latency follows the stored numbers plus a per-layer cost the parameter count does not "
        "see: sparsify keeps every neuron, so its activations (norm and gain) cost as much as "
        "in the dense model, and it lands a little above its parameter ratio. `all` threads is "
        f"{os.cpu_count()} on this machine, which other jobs share: those columns measure "
        "contention as much as the model (the masked control does the dense model's work, so "
        "its deviation from 1 is the yardstick of that noise)."
    )
    record(
        "latency",
        md,
        {
            "widths": widths,
            "runs": runs,
            "int8_max_abs_logit_change": int8_change,
            "variants": data,
        },
    )
    print(format_table(headers, rows))
    print("\n".join(verdicts))
    return 0


def _export_verified(models: dict[str, ip.IsotropicMLP], tmp: Path) -> dict[str, Path]:
    """Export and verify every variant (time only what is known to be right), plus int8."""
    paths = {}
    for name, model in models.items():
        t0 = time.perf_counter()
        paths[name] = export_onnx(model, tmp / f"{name}.onnx")
        report = verify_onnx(paths[name], model)
        print(
            f"  exported + verified {name:<12} {paths[name].stat().st_size / 2**20:6.1f} MiB"
            f"  max abs error {report.max_abs:.1e}  ({time.perf_counter() - t0:.1f} s)",
            flush=True,
        )
    paths["int8"] = Path(quantize_int8(paths["dense"], tmp / "int8.onnx").path)
    return paths


def _time_all(
    paths: dict[str, Path], x64: np.ndarray, runs: int
) -> dict[tuple[int, int], dict[str, float]]:
    """Interleaved median seconds per variant for every (batch, threads) of :data:`CONFIGS`."""
    medians: dict[tuple[int, int], dict[str, float]] = {}
    for batch, threads in CONFIGS:
        x = x64[:batch]
        sessions = {name: ort_session(p, threads=threads) for name, p in paths.items()}
        calls = {name: (lambda s=s, x=x: s.run(None, {"input": x})) for name, s in sessions.items()}
        t0 = time.perf_counter()
        medians[(batch, threads)] = interleaved_medians(calls, runs)
        shown = ", ".join(f"{k} {v * 1e3:.2f}" for k, v in medians[(batch, threads)].items())
        print(
            f"  batch {batch:>2}, threads {threads or 'all'}: {shown} ms "
            f"({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )
    return medians


def _l3_cache() -> str:
    try:
        size = Path("/sys/devices/system/cpu/cpu0/cache/index3/size").read_text().strip()
    except OSError:
        return "of unknown size"
    return f"an L3 of {size}"


def _summarise(
    medians: dict[tuple[int, int], dict[str, float]],
    params: dict[str, int],
    sizes: dict[str, int],
) -> tuple[dict[str, dict], list[list[object]], list[str]]:
    data: dict[str, dict] = {}
    rows: list[list[object]] = []
    for name in VARIANTS:
        ratio = params[name] / params["dense"]
        cells, entry = [], {"stored_params": params[name], "param_ratio": ratio}
        entry["file_bytes"] = sizes[name]
        for batch, threads in CONFIGS:
            m = medians[(batch, threads)]
            lat_ratio = m[name] / m["dense"]
            key = f"batch{batch}_threads{threads or 'all'}"
            entry[key] = {"median_s": m[name], "latency_ratio": lat_ratio}
            cells.append(f"{m[name] * 1e3:.3g} ({lat_ratio:.2f})")
        data[name] = entry
        rows.append([name, params[name], f"{ratio:.3f}", f"{sizes[name] / 2**20:.1f}", *cells])
    verdicts = []
    for name in RESIZED:
        target = data[name]["param_ratio"]
        for batch, threads in CONFIGS:
            key = f"batch{batch}_threads{threads or 'all'}"
            lat = data[name][key]["latency_ratio"]
            met = abs(lat - target) <= TARGET_SLACK * target
            data[name][key]["within_10pct_of_param_ratio"] = met
            how = "met" if met else ("MISSED (faster)" if lat < target else "MISSED (slower)")
            verdicts.append(
                f"{name}, batch {batch}, {threads or 'all'} thread(s): latency ratio {lat:.2f} vs "
                f"parameter ratio {target:.2f}: {how}"
            )
    for batch, threads in CONFIGS:
        key = f"batch{batch}_threads{threads or 'all'}"
        lat = data["masked"][key]["latency_ratio"]
        verdicts.append(
            f"masked control, batch {batch}, {threads or 'all'} thread(s): latency ratio {lat:.2f} "
            + ("(no gain, as expected)" if lat >= 0.9 else "(UNEXPECTED gain: check the timing)")
        )
    return data, rows, verdicts


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
