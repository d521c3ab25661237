"""Mutation check: apply single realistic bugs, one at a time, to a copy of the tree, rerun the
tests that should notice, and print killed/survived.

``python -m benchmarks.mutation [NAME ...]`` (or ``make mutation``); exit status 1 if any mutant
survives. Not part of ``make test`` (each mutant reruns its tests: minutes in all).

Each mutant is ``(name, file, old, new, tests)``: ``old`` must occur exactly once in ``file``
(so a refactor that moves the code makes the mutant fail loudly instead of silently passing).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

MUTANTS: list[tuple[str, str, str, str, list[str]]] = [
    (
        "halve the prune bound",
        "isoproof/ops/neurodegeneration.py",
        "bound = downstream_lipschitz(s, model, h) * float(delta.norm())",
        "bound = downstream_lipschitz(s, model, h) * float(delta.norm()) / 2",
        ["tests/test_bounds.py"],
    ),
    (
        "drop the psi term of the downstream Lipschitz constant",
        "isoproof/ops/_bounds.py",
        "c *= model.pool_norm(j) * (w * lip_f + p * lip_g)",
        "c *= model.pool_norm(j) * (w * lip_f)",
        ["tests/test_bounds.py"],
    ),
    (
        "layer-0 input bound from the mean probe row norm",
        "isoproof/ops/_bounds.py",
        "largest = float(model.sample_norms(probe.detach().to(torch.float64)).max())",
        "largest = float(model.sample_norms(probe.detach().to(torch.float64)).mean())",
        ["tests/test_bounds.py"],
    ),
    (
        "adapt sweeps first layer to last",
        "isoproof/ops/scaffold.py",
        "for h in reversed(range(s.num_layers - 1)):",
        "for h in range(s.num_layers - 1):",
        ["tests/test_mutants.py"],
    ),
    (
        "adapt counts sigma < threshold",
        "isoproof/ops/scaffold.py",
        "count = int((s.singular_values(h) <= threshold).sum())",
        "count = int((s.singular_values(h) < threshold).sum())",
        ["tests/test_mutants.py"],
    ),
    (
        "psi gathering skipped with exactly two dead neurons",
        "isoproof/ops/neurodegeneration.py",
        "if dead > 1:",
        "if dead > 2:",
        ["tests/test_bounds.py"],
    ),
    (
        "float64 norm switch at 1e38 instead of 1e30",
        "isoproof/activations.py",
        "not largest < 1e30",
        "not largest < 1e38",
        ["tests/test_mutants.py"],
    ),
    (
        "export-mode norm clamped at eps instead of eps^2",
        "isoproof/activations.py",
        "return torch.sqrt(torch.clamp_min(squares, self.eps**2))",
        "return torch.sqrt(torch.clamp_min(squares, self.eps))",
        ["tests/test_mutants.py"],
    ),
    (
        "load ignores the eps stored in the config",
        "isoproof/network.py",
        'eps=config["eps"],',
        "",
        ["tests/test_hostile_checkpoint.py::test_the_stored_eps_is_used"],
    ),
    (
        "gain EMA weights swapped",
        "isoproof/mlp.py",
        "blended = (1 - momentum) * self.gain_means + momentum * means.to(self.gain_means)",
        "blended = momentum * self.gain_means + (1 - momentum) * means.to(self.gain_means)",
        ["tests/test_mutants.py"],
    ),
    (
        "checkpoint digest ignores the config",
        "isoproof/io.py",
        'prefix = f"isoproof-checkpoint/2|{fmt}|{config_json}|"',
        'prefix = f"isoproof-checkpoint/2|{fmt}|"',
        ["tests/test_hostile_checkpoint.py"],
    ),
    (
        "header byte sizes not checked",
        "isoproof/io.py",
        "if not ok or end - start != nbytes or end > data_size:",
        "if not ok:",
        ["tests/test_hostile_checkpoint.py"],
    ),
    (
        "training digest ignores the training entry",
        "isoproof/io.py",
        'prefix += f"training|{len(training_json)}|{training_json}|"',
        "pass",
        ["tests/test_hostile_checkpoint.py"],
    ),
    (
        "int8 verification without the error bound",
        "exporters/verify.py",
        "INT8_MAX_RELATIVE_ERROR = 0.5",
        "INT8_MAX_RELATIVE_ERROR = 1e9",
        ["tests/test_export_edge.py"],
    ),
    (
        "radial Lipschitz constant of f halved",
        "isoproof/radial.py",
        "return bound, 1.0, gain_lip, 1.0",
        "return bound, 0.5, gain_lip, 1.0",
        ["tests/test_bounds.py"],
    ),
]


def _copy_tree(dest: Path) -> None:
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    for name in files:
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)


def run_mutant(work: Path, file: str, old: str, new: str, tests: list[str]) -> str:
    """``"killed"`` or ``"survived"`` (the tree in ``work`` is restored afterwards)."""
    path = work / file
    text = path.read_text()
    if text.count(old) != 1:
        return f"STALE ({text.count(old)} matches of the original code)"
    path.write_text(text.replace(old, new))
    try:
        cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests]
        rc = subprocess.run(cmd, cwd=work, capture_output=True, timeout=1800).returncode
    finally:
        path.write_text(text)
    return "killed" if rc != 0 else "survived"


def main(argv: list[str]) -> int:
    chosen = [m for m in MUTANTS if not argv or m[0] in argv]
    results: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory(prefix="isoproof-mutation-") as tmp:
        work = Path(tmp)
        _copy_tree(work)
        for name, file, old, new, tests in chosen:
            t0 = time.perf_counter()
            outcome = run_mutant(work, file, old, new, tests)
            print(f"{outcome:9s} {name} ({time.perf_counter() - t0:.0f} s)", flush=True)
            results.append((name, outcome))
    killed = sum(o == "killed" for _, o in results)
    print(f"mutation: {killed} killed out of {len(results)}")
    return 0 if killed == len(results) else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
