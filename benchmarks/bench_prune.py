"""Cost of removing k neurons in one call vs k single-neuron removals (1024-wide layer).

``prune(model, layer, n=k)`` does ONE SVD whatever k; the author's code does one SVD per neuron.
Target (issue 3): one call costs <= 1.3x a single removal for k in {1, 8, 64}.
"""

from __future__ import annotations

import copy
import statistics
import sys
import time

import torch

import isoproof as ip
from isoproof.table import markdown_table

from ._common import record

WIDTHS = [256, 1024, 1024, 10]
LAYER = 1


def _timed(model: ip.IsotropicMLP, fn) -> float:
    m = copy.deepcopy(model)
    t0 = time.perf_counter()
    fn(m)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    repeats = 7
    torch.manual_seed(0)
    model = ip.IsotropicMLP(WIDTHS)
    ks = (1, 8, 64)
    _timed(model, lambda m: ip.prune(m, LAYER, 1))  # warm-up (LAPACK, allocator)
    # interleaved rounds, so that load changes on a shared machine hit every column alike
    single_t: list[float] = []
    batched_t: dict[int, list[float]] = {k: [] for k in ks}
    for _ in range(repeats):
        single_t.append(_timed(model, lambda m: ip.prune(m, LAYER, 1)))
        for k in ks:
            batched_t[k].append(_timed(model, lambda m, k=k: ip.prune(m, LAYER, k)))
    single = statistics.median(single_t)
    rows, data = [], []
    for k in ks:
        batched = statistics.median(batched_t[k])

        def loop(m, k=k):
            for _ in range(k):
                ip.prune(m, LAYER, 1)

        repeated = _timed(model, loop)
        ratio = batched / single
        rows.append(
            [
                k,
                f"{batched * 1e3:.0f}",
                f"{repeated * 1e3:.0f}",
                f"{ratio:.2f}",
                "yes" if ratio <= 1.3 else "NO",
                f"{repeated / batched:.1f}x",
            ]
        )
        data.append(
            {"k": k, "one_call_s": batched, "k_single_calls_s": repeated, "ratio_to_single": ratio}
        )
        print(f"k={k}: one call {batched:.3f}s, {k} single calls {repeated:.3f}s", flush=True)
    table = markdown_table(
        [
            "k",
            "prune(n=k) ms",
            "k x prune(n=1) ms",
            "one call / single removal",
            "<= 1.3x",
            "speed-up vs k singles",
        ],
        rows,
    )
    md = (
        f"## Pruning k neurons at once ({WIDTHS}, hidden layer {LAYER}, float32)\n\n"
        f"Single removal: {single * 1e3:.0f} ms (median of {repeats}); one SVD per call.\n\n"
        + table
    )
    record("prune", md, {"widths": WIDTHS, "layer": LAYER, "single_s": single, "rows": data})
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
