"""``isoproof experiment NAME``: run one of the paper's experiments at laptop scale.

Writes ``<out>/<name>.md``, ``.json`` and ``.png``; ``all`` runs every experiment in turn.

Example::

    isoproof experiment invariance --quick --out /tmp/results
"""

from __future__ import annotations

import argparse

from ..experiments import EXPERIMENTS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "experiment",
        help="run a paper experiment (tables, JSON and plots under docs/results)",
    )
    p.add_argument("name", choices=(*EXPERIMENTS, "all"), help="which experiment, or all")
    p.add_argument("--quick", action="store_true", help="tiny settings (seconds; for tests)")
    p.add_argument("--out", default="docs/results", help="output folder (default docs/results)")
    p.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..experiments import run_experiment

    names = list(EXPERIMENTS) if args.name == "all" else [args.name]
    for name in names:
        paths = run_experiment(
            name, quick=args.quick, out=args.out, seed=args.seed, verbose=not args.quiet
        )
        print(f"{name}: wrote {', '.join(str(p) for p in paths)}")
    return 0
