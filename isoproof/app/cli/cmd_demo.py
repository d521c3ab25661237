"""``isoproof demo``: prove, train with the scaffold buffer, prune, sparsify, export, verify."""

from __future__ import annotations

import argparse

from ...files import check_folder


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the end-to-end demo on the embedded digits data")
    p.add_argument("--out", default="out/demo", help="output folder (default out/demo)")
    p.add_argument("--epochs", type=int, default=25, help="training epochs (default 25)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--no-prove",
        dest="prove",
        action="store_false",
        help="skip the symbolic proofs (about 12 s)",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    if args.epochs < 1:
        raise ValueError(f"expected --epochs >= 1, got {args.epochs}")
    check_folder(args.out, "--out")
    summary = run_demo(args.out, epochs=args.epochs, seed=args.seed, prove=args.prove)
    return 0 if summary["onnx"]["ok"] and summary["reload_identical"] else 1
