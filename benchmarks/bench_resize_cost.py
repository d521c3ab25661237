"""What a resize costs, and how much of it is the factorisations it needs (issue 18, §1).

* each operation's wall time and the share spent in float64 factorisations (``svd``,
  ``svdvals``, ``eigh``, timed by wrapping them for the run);
* a 50% prune of ``[784, 1024 x 8, 10]`` (8 x ``prune(n=512)``) against Torch-Pruning's
  ``MagnitudePruner.step()`` on a tanh MLP of the same widths;
* ``prune(n=8)`` on a 2048-wide layer against one float64 ``svdvals`` of that map;
* the extra peak memory of ``sparsify`` on ``[4096] * 4`` float32, in a fresh process.

Targets: every resize <= 1.3x its factorisations; 50% prune within 15x TP's ``step()``;
``prune(n=8)`` within 1.5x one ``svdvals``; ``sparsify`` extra peak <= 2.5x the model's size.
One thread; variants interleaved where compared; the machine is shared (see the machine line).
"""

from __future__ import annotations

import copy
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

import isoproof as ip
from isoproof.standard import standard_mlp
from isoproof.table import markdown_table

from ._common import record

DEEP = [784, *([1024] * 8), 10]
FACTORISATIONS = ("svd", "svdvals", "eigh")


@contextmanager
def factorisation_clock() -> Iterator[dict[str, float]]:
    """Time spent inside ``torch.linalg.{svd, svdvals, eigh}`` while the block runs."""
    spent = {"seconds": 0.0}
    originals = {name: getattr(torch.linalg, name) for name in FACTORISATIONS}

    def timed(fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent["seconds"] += time.perf_counter() - t0

        return wrapper

    for name, fn in originals.items():
        setattr(torch.linalg, name, timed(fn))
    try:
        yield spent
    finally:
        for name, fn in originals.items():
            setattr(torch.linalg, name, fn)


def _trained_like(widths: list[int], seed: int = 0) -> ip.IsotropicMLP:
    """Orthogonal init with spread singular values and non-zero biases/psi (a trained layer's
    spectrum decays; all-equal sigma would make every choice a tie)."""
    g = torch.Generator().manual_seed(seed)
    model = ip.IsotropicMLP(widths, generator=g)
    with torch.no_grad():
        for lin in model.linears:
            U, _, Vh = torch.linalg.svd(lin.weight.double(), full_matrices=False)
            S = torch.logspace(0, -1.5, min(lin.weight.shape), dtype=torch.float64)
            lin.weight.copy_(U @ torch.diag(S) @ Vh)
            lin.bias.normal_(std=0.1, generator=g)
        for p in model.psi:
            p.normal_(std=0.01, generator=g)
    return model


def operation_shares(model: ip.IsotropicMLP) -> list[dict[str, Any]]:
    ops: dict[str, Callable[[ip.IsotropicMLP], object]] = {
        "prune 50% (8 x prune(n=512))": lambda m: [ip.prune(m, h, 512) for h in range(8)],
        "prune_dead": lambda m: ip.prune_dead(m),
        "adapt(5, 0.95)": lambda m: ip.adapt(m, buffer=5, threshold=0.95),
        "prune(n=1), layer 4": lambda m: ip.prune(m, 4, 1),
        "sparsify": lambda m: ip.sparsify(m),
    }
    rows = []
    for name, op in ops.items():
        work = copy.deepcopy(model)
        with factorisation_clock() as clock:
            t0 = time.perf_counter()
            op(work)
            total = time.perf_counter() - t0
        rows.append(
            {
                "operation": name,
                "seconds": total,
                "factorisation_s": clock["seconds"],
                "ratio": total / clock["seconds"] if clock["seconds"] else float("nan"),
            }
        )
        print(f"{name}: {total:.2f} s, factorisations {clock['seconds']:.2f} s", flush=True)
    return rows


def versus_torch_pruning(model: ip.IsotropicMLP, rounds: int = 3) -> dict[str, Any]:
    import torch_pruning as tp

    example = torch.randn(2, DEEP[0])
    iso_t, tp_t = [], []
    for _ in range(rounds):  # interleaved
        work = copy.deepcopy(model)
        t0 = time.perf_counter()
        for h in range(8):
            ip.prune(work, h, 512)
        iso_t.append(time.perf_counter() - t0)
        std = standard_mlp(DEEP)
        last = [m for m in std.modules() if isinstance(m, torch.nn.Linear)][-1]
        pruner = tp.pruner.MagnitudePruner(
            std,
            example,
            importance=tp.importance.MagnitudeImportance(p=2),
            pruning_ratio=0.5,
            ignored_layers=[last],
        )
        t0 = time.perf_counter()
        pruner.step()
        tp_t.append(time.perf_counter() - t0)
    iso, tpm = statistics.median(iso_t), statistics.median(tp_t)
    return {"isoproof_s": iso, "torch_pruning_s": tpm, "ratio": iso / tpm}


def versus_svdvals(width: int = 2048, rounds: int = 3) -> dict[str, Any]:
    model = _trained_like([256, width, width, 10])
    W = model.linears[1].weight.detach().double()
    prune_t, svals_t = [], []
    for _ in range(rounds):  # interleaved
        work = copy.deepcopy(model)
        t0 = time.perf_counter()
        ip.prune(work, 1, 8)
        prune_t.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        torch.linalg.svdvals(W)
        svals_t.append(time.perf_counter() - t0)
    p, s = statistics.median(prune_t), statistics.median(svals_t)
    return {"prune_s": p, "svdvals_s": s, "ratio": p / s, "width": width}


_MEMORY_PROBE = """
import json, resource, torch, isoproof as ip
torch.set_num_threads(1)
m = ip.IsotropicMLP([4096] * 4, init="kaiming")
size = sum(p.numel() * p.element_size() for p in m.parameters())
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
ip.sparsify(m)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"model_bytes": size, "extra_peak_bytes": peak - base}))
"""


def sparsify_memory() -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", _MEMORY_PROBE], capture_output=True, text=True, check=True
    )
    data = json.loads(out.stdout.strip().splitlines()[-1])
    data["ratio"] = data["extra_peak_bytes"] / data["model_bytes"]
    return data


def _verdict(value: float, target: float) -> str:
    return "met" if value <= target else f"missed by {value / target - 1:.0%}"


def main(argv: list[str] | None = None) -> int:
    torch.set_num_threads(1)
    model = _trained_like(DEEP)
    shares = operation_shares(model)
    tp_cmp = versus_torch_pruning(model)
    svd_cmp = versus_svdvals()
    memory = sparsify_memory()
    table = markdown_table(
        [
            "operation on [784, 1024 x 8, 10]",
            "seconds",
            "in factorisations",
            "total / factorisations",
        ],
        [
            [
                r["operation"],
                f"{r['seconds']:.2f}",
                f"{r['factorisation_s']:.2f}",
                f"{r['ratio']:.2f}",
            ]
            for r in shares
        ],
    )
    worst = max(r["ratio"] for r in shares)
    lines = [
        f"- every resize <= 1.3x its factorisations: worst {worst:.2f}x: {_verdict(worst, 1.3)}",
        f"- 50% prune vs Torch-Pruning `MagnitudePruner.step()`: {tp_cmp['isoproof_s']:.2f} s vs "
        f"{tp_cmp['torch_pruning_s']:.2f} s = {tp_cmp['ratio']:.1f}x (target 15x): "
        f"{_verdict(tp_cmp['ratio'], 15)}",
        f"- `prune(n=8)` on a {svd_cmp['width']}-wide layer vs one float64 `svdvals`: "
        f"{svd_cmp['prune_s']:.2f} s vs {svd_cmp['svdvals_s']:.2f} s = {svd_cmp['ratio']:.2f}x "
        f"(target 1.5x): {_verdict(svd_cmp['ratio'], 1.5)}",
        f"- `sparsify` on [4096] * 4 float32: extra peak {memory['extra_peak_bytes'] / 2**20:.0f} "
        f"MiB for a {memory['model_bytes'] / 2**20:.0f} MiB model = {memory['ratio']:.2f}x "
        f"(target 2.5x): {_verdict(memory['ratio'], 2.5)}",
    ]
    markdown = (
        "## Resizing at the cost of its factorisations\n\n"
        "Model: orthogonal maps with singular values spread over 1 .. 0.03, non-zero biases and "
        "psi; float32, one thread. Factorisation time is the time inside `torch.linalg.svd`, "
        "`svdvals` and `eigh` during the call.\n\n" + table + "\n\n" + "\n".join(lines)
    )
    record(
        "resize_cost",
        markdown,
        {
            "operations": shares,
            "torch_pruning": tp_cmp,
            "svdvals": svd_cmp,
            "sparsify_memory": memory,
        },
    )
    print(markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
