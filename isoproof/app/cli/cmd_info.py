"""``isoproof info MODEL``: widths, parameters and per-layer singular values of a checkpoint.

A collapsed checkpoint (:func:`isoproof.collapse`) shows its widths, ranks ``r_l``, the shape of
its stacked matrix, its stored numbers and the ``o_l`` it keeps.
"""

from __future__ import annotations

import argparse

from ._common import existing_file, load_model


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="describe a saved model (widths, parameters, spectra)")
    p.add_argument("model", type=existing_file, help="a .safetensors file written by isoproof")
    p.add_argument(
        "--threshold",
        type=float,
        default=0.1,
        help="count singular values at or below this (default 0.1)",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ...io import read_metadata
    from ...ops.diagonalisation import singular_values
    from ...table import format_table

    model = load_model(args.model)
    meta = read_metadata(args.model)
    cfg = model.config()
    print(f"{args.model}  (isoproof {meta.get('isoproof_version', '?')})")
    training = meta.get("training")  # a training checkpoint (train --checkpoint); untrusted
    if isinstance(training, dict):
        opt = training.get("optimizer")
        cls = opt.get("class") if isinstance(opt, dict) else None
        print(f"training checkpoint: epoch {training.get('epoch')!r}, optimiser {cls!r}")
    if "ranks" in cfg:  # a CollapsedMLP (isoproof collapse)
        return _collapsed(model, cfg)
    print(f"widths            {model.widths}")
    if "input_shape" in cfg:  # a CNN: its input and layer specs
        print(f"input shape       {cfg['input_shape']}")
        print(f"layers            {cfg['layers']}")
    print(
        f"radial            {cfg['radial']}   intrinsic length: {cfg['intrinsic_length']}   "
        f"psi: {cfg['psi']}   dtype: {cfg['dtype']}"
    )
    print(
        f"stored parameters {model.count_parameters()}  "
        f"(hidden-to-hidden weights {model.count_parameters(hidden_only=True)})"
    )
    rows = []
    for i, m in enumerate(model.maps):
        s = singular_values(model, i)
        o = float(model.activations[i].o.detach()) if i < len(model.activations) else None
        rows.append(
            [
                i,
                _shape(m),
                _storage(model, i),
                float(s.max()),
                float(s.median()),
                float(s.min()),
                int((s <= args.threshold).sum()),
                o,
            ]
        )
    print(
        format_table(
            [
                "map",
                "shape",
                "storage",
                "sigma max",
                "sigma median",
                "sigma min",
                f"<= {args.threshold:g}",
                "o",
            ],
            rows,
        )
    )
    return 0


def _collapsed(model, cfg) -> int:
    o = [round(float(a.o), 6) for a in model.activations]
    print(
        f"collapsed         {cfg['widths']} (one MatMul [{model.stacked.shape[0]}, "
        f"{model.stacked.shape[1]}], then the scalar recursion)"
    )
    print(
        f"ranks             {cfg['ranks']}   radial: {cfg['radial']}   eps: {cfg['eps']:g}   "
        f"dtype: {cfg['dtype']}"
    )
    print(f"stored numbers    {model.count_parameters()}   o per layer: {o}")
    return 0


def _shape(m) -> str:
    """``in->out`` features, or ``in->out channels kxk`` of a convolution."""
    if hasattr(m, "in_features"):
        return f"{m.in_features}->{m.out_features}"
    k = "x".join(str(int(n)) for n in m.weight.shape[2:])
    return f"{m.in_channels}->{m.out_channels} ch, {k}"


def _storage(model, i: int) -> str:
    if i in model.diagonal_layers:
        return "diagonal"
    return "conv" if hasattr(model.maps[i], "in_channels") else "dense"
