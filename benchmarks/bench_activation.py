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


def _step(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    penalty = getattr(model, "penalty", None)

    def run() -> None:
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(x), y)
        if penalty is not None:
            loss = loss + penalty()
        loss.backward()
        opt.step()

    return run


def _forward(model: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        with torch.no_grad():
            model(x)

    return run


def eager_rows(widths: list[int], calls: int) -> list[dict[str, Any]]:
    iso, std = _pair(widths)
    xs = {b: torch.randn(b, widths[0]) for b in (1, 64)}
    y = torch.randint(0, widths[-1], (64,))
    runs = {
        "iso forward b1": _forward(iso, xs[1]),
        "tanh forward b1": _forward(std, xs[1]),
        "iso forward b64": _forward(iso, xs[64]),
        "tanh forward b64": _forward(std, xs[64]),
        "iso step b64": _step(iso, xs[64], y),
        "tanh step b64": _step(std, xs[64], y),
    }
    med = interleaved_medians(runs, calls)
    ops = (_aten_ops(iso, xs[1]), _aten_ops(std, xs[1]))
    return [
        {
            "engine": "torch eager",
            "widths": widths,
            "kind": kind,
            "iso_s": med[f"iso {kind}"],
            "tanh_s": med[f"tanh {kind}"],
            "ratio": med[f"iso {kind}"] / med[f"tanh {kind}"],
            "aten_ops_iso_tanh": ops,
        }
        for kind in ("forward b1", "forward b64", "step b64")
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
    sessions = {}
    variants = (("iso", iso), ("iso+psi", busy), ("iso o=0", bare), ("fewest nodes", None))
    for name, model in (*variants, ("tanh", std)):
        model = _FewestNodes(bare) if model is None else model
        path = export_onnx(model, folder / f"{name}-{widths[1]}.onnx", input_width=widths[0])
        sessions[name] = ort_session(path)
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
    markdown = (
        "## Cost of the isotropic activation against tanh (torch eager and ONNX Runtime)\n\n"
        "Same widths and weights, one thread, variants interleaved call by call; ratio = "
        "isotropic / tanh. aten ops per no-grad forward (isotropic vs tanh): "
        f"{ops_text}.\n\n{table}"
    )
    record("activation", markdown, {"rows": rows})
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
