"""``isoproof prove``: run the SymPy proofs of every invariance (same as ``python -m proofs``).

On a terminal, a progress bar on stderr names the claim being checked
(:class:`isoproof.progress.Progress`); elsewhere nothing but the report is printed.
"""

from __future__ import annotations

import argparse

from ._common import add_force, check_output


def register(sub: argparse._SubParsersAction) -> None:
    from isoproof.proofs.options import add_arguments  # no SymPy: --version stays instant

    p = sub.add_parser(
        "prove",
        help="check the symbolic proofs (table, JSON and JUnit reports)",
        description="Exit 0 iff every claim holds and every negative control is refuted.",
    )
    add_arguments(p)
    add_force(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from isoproof.proofs.runner import run_from_args

    from ...progress import Progress

    for flag, path, suffix in (("--json", args.json, ".json"), ("--junit", args.junit, ".xml")):
        if path is not None:
            check_output(path, [], (suffix,), force=args.force, flag=flag)
    with Progress("prove", transient=True) as bar:  # drawn only on a terminal

        def on_claim(index: int, total: int, claim_id: str) -> None:
            bar.update(claim_id, completed=index, total=total)

        return int(run_from_args(args, on_claim))
