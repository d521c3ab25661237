"""``isoproof prove``: run the SymPy proofs of every invariance (same as ``python -m proofs``)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "prove", help="check the symbolic proofs (JSON / JUnit reports)", add_help=False
    )
    p.add_argument(
        "rest",
        nargs=argparse.REMAINDER,
        help="options of python -m proofs (--json PATH, --junit PATH, --only ID, ...)",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from proofs.runner import main

    return int(main(list(args.rest)))
