"""What the isotropic activation costs against tanh: torch eager and ONNX Runtime (issue 18, §2-§3).

Same widths, same weights (``paired_standard``), one thread, variants interleaved call by call
(:func:`isoproof.exporters.runtime.interleaved_medians`), medians; ratios come from one run.

* torch eager: a ``no_grad`` forward at batch 1 and 64, and a training step at batch 64
  (forward, cross-entropy, the psi penalty, backward, AdamW), plus the number of aten ops of one
  forward (profiler);
* ONNX Runtime CPU: the exported files, batch 1 and 64. The untrained models have psi = 0 and the
  export drops exactly-zero terms, so ``iso+psi`` (random non-zero psi) shows the cost of a
  trained model's psi nodes too.

Targets (issue 18): training step <= 1.3x tanh at 64 wide and <= 1.05x at 784 wide; eager forward at
batch 1 <= 2x at 64 wide; ORT <= 1.3x at 64-128 wide and <= 1.03x at >= 1024.
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from isoproof.exporters import export_onnx
from isoproof.exporters.runtime import interleaved_medians, ort_session
from torch import nn

import isoproof as ip
from isoproof.standard import paired_standard
from isoproof.table import markdown_table

from ._common import record

EAGER = ([64, 128, 128, 10], [784, 1024, 1024, 1024, 10])
ORT = ([64, 64, 64, 10], [64, 128, 128, 10], [784, 1024, 1024, 1024, 10])
TARGETS = {  # (kind, widths[1]) -> target ratio
    ("step b64", 128): 1.3,
    ("step b64", 1024): 1.05,
    ("forward b1", 128): 2.0,
}


def _pair(widths: list[int]) -> tuple[ip.IsotropicMLP, nn.Module]:
    torch.manual_seed(0)
    iso = ip.IsotropicMLP(widths)
    return iso, paired_standard(iso)


def _aten_ops(model: nn.Module, x: torch.Tensor) -> int:
    from torch.profiler import profile

    with torch.no_grad():
        model(x)
        with profile() as prof:
            model(x)
    return sum(1 for e in prof.events() if e.name.startswith("aten::"))


def _loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    loss = nn.functional.cross_entropy(model(x), y)
    penalty = getattr(model, "penalty", None)
    return loss if penalty is None else loss + penalty()


def _step(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def run() -> None:
        opt.zero_grad(set_to_none=True)
        _loss(model, x, y).backward()
        opt.step()

    return run


def _step_parts(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor
) -> tuple[Callable[[], None], Callable[[], None]]:
    """The training step in two timed parts: forward + loss + backward, and AdamW's step."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def backward() -> None:
        opt.zero_grad(set_to_none=True)
        _loss(model, x, y).backward()

    backward()  # the optimiser's state exists from here on
    opt.step()
    return backward, opt.step


def _graph_nodes(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    """Autograd nodes of one training loss (what the backward walks)."""
    seen: dict[int, object] = {}  # the nodes are kept alive: their ids stay unique
    stack = [_loss(model, x, y).grad_fn]
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen[id(node)] = node
        stack.extend(fn for fn, _ in node.next_functions)
    return len(seen)


def _forward(model: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        with torch.no_grad():
            model(x)

    return run


def eager_rows(widths: list[int], calls: int) -> list[dict[str, Any]]:
    iso, std = _pair(widths)
    xs = {b: torch.randn(b, widths[0]) for b in (1, 64)}
    y = torch.randint(0, widths[-1], (64,))
    runs: dict[str, Callable[[], None]] = {}
    for name, model in (("iso", iso), ("tanh", std)):
        runs[f"{name} forward b1"] = _forward(model, xs[1])
        runs[f"{name} forward b64"] = _forward(model, xs[64])
        runs[f"{name} step b64"] = _step(model, xs[64], y)
        runs[f"{name} backward b64"], runs[f"{name} adamw b64"] = _step_parts(
            copy.deepcopy(model), xs[64], y
        )
    med = interleaved_medians(runs, calls)
    ops = (_aten_ops(iso, xs[1]), _aten_ops(std, xs[1]))
    nodes = (_graph_nodes(iso, xs[64], y), _graph_nodes(std, xs[64], y))
    tensors = (len(list(iso.parameters())), len(list(std.parameters())))
    return [
        {
            "engine": "torch eager",
            "widths": widths,
            "kind": kind,
            "iso_s": med[f"iso {kind}"],
            "tanh_s": med[f"tanh {kind}"],
            "ratio": med[f"iso {kind}"] / med[f"tanh {kind}"],
            "aten_ops_iso_tanh": ops,
            "autograd_nodes_iso_tanh": nodes,
            "parameter_tensors_iso_tanh": tensors,
        }
        for kind in ("forward b1", "forward b64", "step b64", "backward b64", "adamw b64")
    ]


class _FewestNodes(nn.Module):
    """The fewest-node graph ORT CPU runs for an ``o = 0``, psi-free isotropic MLP:
    ``ReduceL2, Clip, Tanh, Div, Mul`` per layer (5 nodes; the portable profile has 7). Not
    portable (NNAPI/CoreML lack ``ReduceL2``): measured here only, to see what nodes cost."""

    def __init__(self, model: ip.IsotropicMLP) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lins = list(self.model.linears)
        z = lins[0](x)
        for lin, act in zip(lins[1:], self.model.activations, strict=True):
            n = torch.clamp_min(torch.linalg.vector_norm(z, dim=-1, keepdim=True), act.eps)
            z = lin(z * (torch.tanh(n) / n))
        return z


def ort_rows(widths: list[int], calls: int, folder: Path) -> list[dict[str, Any]]:
    iso, std = _pair(widths)
    busy, bare = ip.IsotropicMLP(widths), ip.IsotropicMLP(widths, intrinsic_length="none")
    busy.load_state_dict(iso.state_dict())
    bare.load_state_dict(iso.state_dict(), strict=False)  # same maps, no o
    with torch.no_grad():
        for p in busy.psi:
            p.normal_(std=0.1)
    import onnx

    sessions, nodes = {}, {}
    variants = (("iso", iso), ("iso+psi", busy), ("iso o=0", bare), ("fewest nodes", None))
    for name, model in (*variants, ("tanh", std)):
        model = _FewestNodes(bare) if model is None else model
        path = export_onnx(model, folder / f"{name}-{widths[1]}.onnx", input_width=widths[0])
        sessions[name] = ort_session(path)
        nodes[name] = len(onnx.load(str(path)).graph.node)
    rows = []
    for b in (1, 64):
        x = torch.randn(b, widths[0]).numpy()
        runs = {n: (lambda s=s, x=x: s.run(None, {"input": x})) for n, s in sessions.items()}
        med = interleaved_medians(runs, calls)
        for name, _ in variants:
            rows.append(
                {
                    "engine": "onnxruntime",
                    "widths": widths,
                    "kind": f"{name} b{b}",
                    "iso_s": med[name],
                    "tanh_s": med["tanh"],
                    "ratio": med[name] / med["tanh"],
                    "nodes_iso_tanh": (nodes[name], nodes["tanh"]),
                    "hidden_layers": len(widths) - 2,
                }
            )
    return rows


def _target(row: dict[str, Any]) -> float | None:
    if row["engine"] == "onnxruntime":
        return 1.3 if row["widths"][1] <= 128 else 1.03
    return TARGETS.get((row["kind"], row["widths"][1]))


def _verdict(row: dict[str, Any]) -> str:
    target = _target(row)
    if target is None:
        return ""
    if row["ratio"] <= target:
        return f"<= {target:g}: met"
    return f"<= {target:g}: missed by {row['ratio'] / target - 1:.0%}"


def _row(rows: list[dict[str, Any]], widths: list[int], kind: str) -> dict[str, Any]:
    return next(r for r in rows if r["widths"] == widths and r["kind"] == kind)


def _eager_note(rows: list[dict[str, Any]], row: dict[str, Any]) -> str:
    """Why a torch-eager target is missed, from the measured parts of the same run."""
    w, ms = row["widths"], 1e3
    head = f"- {row['kind']} at {w}: {row['ratio']:.2f}x ({_verdict(row)})"
    if row["kind"] != "step b64":
        ops = row["aten_ops_iso_tanh"]
        return head + (
            f". Why: at batch 1 the forward is dispatch-bound: {ops[0]} aten ops against "
            f"{ops[1]} (the norm, its overflow check, o, the clamp and the gain per layer where "
            "tanh has one op)."
        )
    back, adamw = _row(rows, w, "backward b64"), _row(rows, w, "adamw b64")
    (ni, nt), (pi, pt) = row["autograd_nodes_iso_tanh"], row["parameter_tensors_iso_tanh"]
    per_node = (back["iso_s"] - back["tanh_s"]) / max(ni - nt, 1) * 1e6
    why = (
        f". Why: forward, loss and backward take {back['iso_s'] * ms:.3f} ms against "
        f"{back['tanh_s'] * ms:.3f} ms ({back['ratio']:.2f}x) for {ni} autograd nodes against "
        f"{nt} (the norm, o, the clamp, the gain, psi and the penalty, where tanh has one node "
        f"per layer); AdamW's step over the isotropic MLP's {pi} parameter tensors (tanh: {pt}; "
        f"one o and one psi per layer) takes {adamw['iso_s'] * ms:.3f} ms against "
        f"{adamw['tanh_s'] * ms:.3f} ms ({adamw['ratio']:.2f}x)."
    )
    if w[1] <= 128:  # tiny maps: each node is mostly dispatch
        why += (
            f" At this width the step is dispatch-bound (about {per_node:.1f} us per extra node): "
            "closing the gap needs fewer nodes than eager autograd can express (a fused kernel)."
        )
    else:
        why += (
            " At this width the extra nodes are full passes over [64, n] activations and their "
            "gradients, a few percent beside the products."
        )
    return head + why


def _ort_note(rows: list[dict[str, Any]]) -> str | None:
    """Why ONNX Runtime misses its targets: node counts and the measured cost per node."""
    missed = [r for r in rows if r["engine"] == "onnxruntime" and r["ratio"] > _target(r)]  # type: ignore[operator]
    if not missed:
        return None
    worst = max(missed, key=lambda r: r["ratio"])
    w, layers = worst["widths"], worst["hidden_layers"]
    per_layer = {}
    for kind in ("iso", "iso o=0", "fewest nodes"):
        r = _row(rows, w, f"{kind} b1")
        per_layer[kind] = (r["nodes_iso_tanh"][0] - r["nodes_iso_tanh"][1]) / layers + 1
    fewest = _row(rows, w, "fewest nodes b1")
    extra = fewest["nodes_iso_tanh"][0] - fewest["nodes_iso_tanh"][1]
    per_node = (fewest["iso_s"] - fewest["tanh_s"]) / max(extra, 1) * 1e6
    return (
        f"- ONNX Runtime: {len(missed)} measurements miss their target (worst {worst['kind']} at "
        f"{w}: {worst['ratio']:.2f}x). Why: per hidden layer the portable graph has "
        f"{per_layer['iso']:.0f} nodes ({per_layer['iso o=0']:.0f} without o), the fewest-node "
        f"graph ORT CPU runs {per_layer['fewest nodes']:.0f} (norm, clamp, tanh, divide, "
        f"multiply), tanh 1; at batch 1 each extra node costs about {per_node:.1f} us here, and "
        f"the fewest-node graph is still {fewest['ratio']:.2f}x at {w}: the floor of an "
        "activation built from standard ONNX ops, not of the export."
    )


def _notes(rows: list[dict[str, Any]]) -> str:
    lines = [
        _eager_note(rows, r)
        for r in rows
        if r["engine"] == "torch eager" and _target(r) is not None and r["ratio"] > _target(r)  # type: ignore[operator]
    ]
    ort = _ort_note(rows)
    return "\n".join([*lines, *([ort] if ort else [])])


def main(argv: list[str] | None = None) -> int:
    torch.set_num_threads(1)
    rows: list[dict[str, Any]] = []
    for widths in EAGER:
        rows += eager_rows(widths, calls=400 if widths[1] <= 128 else 60)
        print(f"eager {widths} done", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for widths in ORT:
            rows += ort_rows(widths, 400 if widths[1] <= 128 else 60, Path(tmp))
            print(f"onnxruntime {widths} done", flush=True)
    table = markdown_table(
        ["engine", "widths", "measure", "isotropic ms", "tanh ms", "ratio", "target"],
        [
            [
                r["engine"],
                str(r["widths"]),
                r["kind"],
                f"{r['iso_s'] * 1e3:.3f}",
                f"{r['tanh_s'] * 1e3:.3f}",
                f"{r['ratio']:.2f}",
                _verdict(r),
            ]
            for r in rows
        ],
    )
    ops = {str(r["widths"]): r["aten_ops_iso_tanh"] for r in rows if "aten_ops_iso_tanh" in r}
    ops_text = "; ".join(f"{w}: {a} vs {t}" for w, (a, t) in ops.items())
    notes = _notes(rows)
    markdown = (
        "## Cost of the isotropic activation against tanh (torch eager and ONNX Runtime)\n\n"
        "Same widths and weights, one thread, variants interleaved call by call; ratio = "
        "isotropic / tanh (`backward` = forward, loss and backward of a training step; `adamw` "
        "= its optimiser step). aten ops per no-grad forward (isotropic vs tanh): "
        f"{ops_text}.\n\n{table}" + (f"\n\nMissed targets:\n\n{notes}" if notes else "")
    )
    record("activation", markdown, {"rows": rows})
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
