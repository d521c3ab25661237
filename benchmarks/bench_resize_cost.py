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
from isoproof.ops import _surgery, neurodegeneration
from isoproof.standard import standard_mlp
from isoproof.table import markdown_table

from ._common import record
from ._models import tp_magnitude_pruner, trained_like

DEEP = [784, *([1024] * 8), 10]
FACTORISATIONS = ("svd", "svdvals", "eigh")


@contextmanager
def _timing(targets: list[tuple[object, str]], spent: dict[str, float], key: str) -> Iterator[None]:
    """Add the time spent inside ``getattr(owner, name)`` for each target to ``spent[key]``."""
    originals = [(owner, name, getattr(owner, name)) for owner, name in targets]

    def timed(fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[key] += time.perf_counter() - t0

        return wrapper

    for owner, name, fn in originals:
        setattr(owner, name, timed(fn))
    try:
        yield
    finally:
        for owner, name, fn in originals:
            setattr(owner, name, fn)


@contextmanager
def factorisation_clock() -> Iterator[dict[str, float]]:
    """Seconds spent inside ``torch.linalg.{svd, svdvals, eigh}`` (``"seconds"``), inside the
    Gram products ``W W^T`` whose ``eigh`` the engine takes (``"gram"``) and inside
    ``apply_linear``, the products that apply a change of basis (``"rotation"``)."""
    spent = {"seconds": 0.0, "gram": 0.0, "rotation": 0.0}
    rotation = [(_surgery, "apply_linear"), (neurodegeneration, "apply_linear")]
    with (
        _timing([(torch.linalg, name) for name in FACTORISATIONS], spent, "seconds"),
        _timing([(_surgery, "gram")], spent, "gram"),
        _timing(rotation, spent, "rotation"),
    ):
        yield spent


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
        fact = clock["seconds"]
        rows.append(
            {
                "operation": name,
                "seconds": total,
                "factorisation_s": fact,
                "gram_s": clock["gram"],
                "rotation_s": clock["rotation"],
                "ratio": total / fact if fact else float("nan"),
                "ratio_with_gram": total / (fact + clock["gram"]) if fact else float("nan"),
            }
        )
        print(f"{name}: {total:.2f} s, factorisations {clock['seconds']:.2f} s", flush=True)
    return rows


def versus_torch_pruning(model: ip.IsotropicMLP, rounds: int = 3) -> dict[str, Any]:
    example = torch.randn(2, DEEP[0])
    iso_t, tp_t, fact_t = [], [], []
    for _ in range(rounds):  # interleaved
        work = copy.deepcopy(model)
        with factorisation_clock() as clock:
            t0 = time.perf_counter()
            for h in range(8):
                ip.prune(work, h, 512)
            iso_t.append(time.perf_counter() - t0)
        fact_t.append(clock["seconds"])
        std = standard_mlp(DEEP)
        pruner = tp_magnitude_pruner(std, example, 0.5)
        t0 = time.perf_counter()
        pruner.step()
        tp_t.append(time.perf_counter() - t0)
    iso, tpm, fact = statistics.median(iso_t), statistics.median(tp_t), statistics.median(fact_t)
    return {"isoproof_s": iso, "torch_pruning_s": tpm, "ratio": iso / tpm, "factorisation_s": fact}


def versus_svdvals(width: int = 2048, rounds: int = 3) -> dict[str, Any]:
    model = trained_like([256, width, width, 10])
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


_SVD_FLOOR_PROBE = """
import json, resource, torch
torch.set_num_threads(1)
W = torch.randn(4096, 4096, dtype=torch.float64)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
torch.linalg.svd(W, full_matrices=True)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"svd_extra_peak_bytes": peak - base}))
"""


def _fresh(probe: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def sparsify_memory() -> dict[str, Any]:
    """``sparsify``'s extra peak, and the floor under it: one float64 SVD (with vectors) of one
    4096 x 4096 map, each in a fresh process."""
    data = _fresh(_MEMORY_PROBE) | _fresh(_SVD_FLOOR_PROBE)
    data["ratio"] = data["extra_peak_bytes"] / data["model_bytes"]
    data["svd_ratio"] = data["svd_extra_peak_bytes"] / data["model_bytes"]
    return data


def _verdict(value: float, target: float) -> str:
    return "met" if value <= target else f"missed by {value / target - 1:.0%}"


def _table(shares: list[dict[str, Any]]) -> str:
    return markdown_table(
        [
            "operation on [784, 1024 x 8, 10]",
            "seconds",
            "in factorisations",
            "in Gram products",
            "in rotation products",
            "total / factorisations",
            "total / (factorisations + Gram)",
        ],
        [
            [
                r["operation"],
                f"{r['seconds']:.2f}",
                f"{r['factorisation_s']:.2f}",
                f"{r['gram_s']:.2f}",
                f"{r['rotation_s']:.2f}",
                f"{r['ratio']:.2f}",
                f"{r['ratio_with_gram']:.2f}",
            ]
            for r in shares
        ],
    )


def _share_line(shares: list[dict[str, Any]]) -> str:
    """The 1.3x verdict; when missed, where the worst operation's time goes (measured)."""
    worst = max(shares, key=lambda r: r["ratio"])
    ratio = worst["ratio"]
    line = (
        f"- every resize <= 1.3x its factorisations: worst {ratio:.2f}x "
        f"({worst['operation']}): {_verdict(ratio, 1.3)}"
    )
    if ratio <= 1.3:
        return line
    fact, gram, rot = worst["factorisation_s"], worst["gram_s"], worst["rotation_s"]
    other = worst["seconds"] - fact - gram - rot
    with_gram = max(r["ratio_with_gram"] for r in shares)
    return line + (
        f". Why: of its {worst['seconds']:.2f} s, the factorisations take {fact:.2f} s, the "
        f"Gram products W W^T whose `eigh` the engine takes {gram:.2f} s, the float64 products "
        f"that apply the change of basis {rot:.2f} s (the kept neurons of a k-of-n removal by "
        f"(n - k) x n products, or by Householder reflections when k < n/3: dense work of the "
        f"order of the factorisation itself at this width) and everything else (copies, checks, "
        f"bounds, the commit) {other:.2f} s. Counted with the Gram products as part of the "
        f"factorisation, the worst resize is {with_gram:.2f}x."
    )


def _tp_line(tp: dict[str, Any]) -> str:
    line = (
        f"- 50% prune vs Torch-Pruning `MagnitudePruner.step()`: {tp['isoproof_s']:.2f} s vs "
        f"{tp['torch_pruning_s']:.2f} s = {tp['ratio']:.1f}x (target 15x): "
        f"{_verdict(tp['ratio'], 15)}"
    )
    if tp["ratio"] <= 15:
        return line
    alone = tp["factorisation_s"] / tp["torch_pruning_s"]
    return line + (
        f". Why: the float64 factorisations of the 8 pruned maps alone take "
        f"{tp['factorisation_s']:.2f} s = {alone:.0f}x Torch-Pruning's step, which ranks weights "
        f"by magnitude and factorises nothing; "
        + (
            "the 15x target is unreachable while pruning stays exact in float64 (the directions "
            "to remove, and the sigma = 0 ones exactly, come from a float64 factorisation of "
            "every pruned map)."
            if alone > 15
            else f"the rest of the prune adds {tp['ratio'] - alone:.0f}x."
        )
    )


def _memory_line(memory: dict[str, Any]) -> str:
    mib = 2**20
    line = (
        f"- `sparsify` on [4096] * 4 float32: extra peak {memory['extra_peak_bytes'] / mib:.0f} "
        f"MiB for a {memory['model_bytes'] / mib:.0f} MiB model = {memory['ratio']:.2f}x "
        f"(target 2.5x): {_verdict(memory['ratio'], 2.5)}"
    )
    if memory["ratio"] <= 2.5:
        return line
    return line + (
        f". Why: one float64 SVD with vectors of a single 4096 x 4096 map (LAPACK's "
        f"divide-and-conquer `gesdd`, what `torch.linalg.svd` runs on CPU) needs "
        f"{memory['svd_extra_peak_bytes'] / mib:.0f} MiB on its own in a fresh process = "
        f"{memory['svd_ratio']:.2f}x the model, above the target before any workspace; "
        f"`sparsify` peaks at {memory['ratio'] / memory['svd_ratio']:.2f}x that floor."
    )


def main(argv: list[str] | None = None) -> int:
    torch.set_num_threads(1)
    model = trained_like(DEEP)
    shares = operation_shares(model)
    tp_cmp = versus_torch_pruning(model)
    svd_cmp = versus_svdvals()
    memory = sparsify_memory()
    lines = [
        _share_line(shares),
        _tp_line(tp_cmp),
        f"- `prune(n=8)` on a {svd_cmp['width']}-wide layer vs one float64 `svdvals`: "
        f"{svd_cmp['prune_s']:.2f} s vs {svd_cmp['svdvals_s']:.2f} s = {svd_cmp['ratio']:.2f}x "
        f"(target 1.5x): {_verdict(svd_cmp['ratio'], 1.5)}",
        _memory_line(memory),
    ]
    markdown = (
        "## Resizing at the cost of its factorisations\n\n"
        "Model: orthogonal maps with singular values spread over 1 .. 0.03, non-zero biases and "
        "psi; float32, one thread. Factorisation time is the time inside `torch.linalg.svd`, "
        "`svdvals` and `eigh` during the call; Gram products are the `W W^T` whose `eigh` the "
        "engine takes on wide maps; rotation products the time inside `apply_linear` (the "
        "changes of basis, dense or by reflections).\n\n"
        + _table(shares)
        + "\n\n"
        + "\n".join(lines)
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
