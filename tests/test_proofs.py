"""The SymPy proofs: one test per registered claim, plus the runner, reports and controls."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from functools import partial
from pathlib import Path
from typing import cast

import pytest
import sympy as sp
from isoproof.proofs import _symbolic, expressions, registry, runner
from isoproof.proofs._matrices import is_matrix_expression, scalarise
from isoproof.proofs._symbolic import (
    cayley,
    forward,
    g,
    is_zero,
    layer_slice,
    reduce,
    trace_residual,
)
from isoproof.proofs.neurodegeneration import degenerate, silence
from isoproof.proofs.registry import Claim, Kind, claims
from isoproof.proofs.report import Result

ROOT = Path(__file__).resolve().parents[1]

CLAIMS = claims()
JSON_KEYS = {"id", "statement", "section", "kind", "holds", "residual", "seconds"}


#: Results of ``test_claim``, reused by ``test_main_writes_json_and_junit`` so that one pytest
#: session evaluates each claim once (claims not yet evaluated are evaluated there).
_RESULTS: dict[str, Result] = {}


@pytest.mark.parametrize("claim", CLAIMS, ids=[c.id for c in CLAIMS])
def test_claim(claim: Claim) -> None:
    result = runner.evaluate(claim, timeout=runner.DEFAULT_TIMEOUT)
    _RESULTS[claim.id] = result
    if claim.kind == "claim":
        assert result.holds and result.status == "proved", (
            f"{claim.id} ({claim.statement}) was not proved: status {result.status}, "
            f"residual {result.residual}"
        )
    else:
        assert not result.holds and result.status == "not proved", (
            f"control {claim.id} ({claim.statement}) did not fail as it must: status "
            f"{result.status}, residual {result.residual}"
        )


def test_registry_is_well_formed() -> None:
    ids = [c.id for c in CLAIMS]
    assert len(ids) == len(set(ids)), "duplicate claim ids"
    assert {c.kind for c in CLAIMS} == {"claim", "control"}
    for claim in CLAIMS:
        assert claim.section in registry.SECTIONS, claim.section
        assert claim.statement and "\n" not in claim.statement, claim.id
        assert callable(claim.check)
    assert registry.get(ids[0]) is CLAIMS[0]
    with pytest.raises(KeyError, match="unknown claim id"):
        registry.get("no.such.claim")


def test_every_control_is_a_broken_claim_and_every_claim_has_one() -> None:
    """A control is ``broken(claim.check, what)`` of a registered claim (the same proof path),
    and no claim is without one (no claim is vacuous)."""
    checks = {c.check: c.id for c in CLAIMS if c.kind == "claim"}
    covered: set[str] = set()
    for control in (c for c in CLAIMS if c.kind == "control"):
        assert isinstance(control.check, partial), control.id
        assert set(control.check.keywords) == {"broken"} and not control.check.args, control.id
        assert control.check.func in checks, f"{control.id} breaks no registered claim"
        covered.add(checks[control.check.func])
    missing = sorted(set(checks.values()) - covered)
    assert not missing, f"claims without a control: {missing}"
    for claim in (c for c in CLAIMS if c.kind == "claim"):
        assert claim.generality and claim.binds, claim.id


def test_readmes_state_exactly_the_registry() -> None:
    """``proofs/README.md`` holds the generated claim table; the README names every claim."""
    root = Path(__file__).parent.parent
    assert registry.markdown_table() in (root / "proofs" / "README.md").read_text("utf-8")
    readme = (root / "README.md").read_text("utf-8")
    section = readme.split("## What is proven, and where it is tested")[1].split("\n## ")[0]
    for claim in CLAIMS:
        if claim.kind == "claim":
            assert f"`{claim.id}`" in section, claim.id


def test_any_width_claims_are_symbolic() -> None:
    """The ``any n`` claims really are stated on sizes that are symbols."""
    any_n = [c for c in CLAIMS if c.kind == "claim" and c.generality.startswith("any n")]
    assert len(any_n) >= 7
    for claim in any_n:
        residual = claim.check()
        assert is_zero(residual), claim.id


@pytest.mark.slow
def test_main_writes_json_and_junit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    evaluate = runner.evaluate
    monkeypatch.setattr(
        runner,
        "evaluate",
        lambda claim, timeout: _RESULTS.get(claim.id) or evaluate(claim, timeout),
    )
    json_path = tmp_path / "out" / "proofs.json"
    junit_path = tmp_path / "deeper" / "out" / "proofs.xml"
    assert runner.main(["--json", str(json_path), "--junit", str(junit_path)]) == 0

    report = json.loads(json_path.read_text(encoding="utf-8"))
    assert report["ok"] is True
    assert isinstance(report["seconds"], float) and isinstance(report["cpu_seconds"], float)
    assert [c["id"] for c in report["claims"]] == [c.id for c in CLAIMS]
    for entry in report["claims"]:
        assert set(entry) >= JSON_KEYS, entry
        assert entry["kind"] in ("claim", "control")
        assert isinstance(entry["holds"], bool) and isinstance(entry["seconds"], float)
        assert isinstance(entry["residual"], str) and len(entry["residual"]) <= 200
        assert entry["holds"] is (entry["kind"] == "claim"), entry

    root = ET.parse(junit_path).getroot()
    cases = root.findall(".//testcase")
    assert [c.get("name") for c in cases] == [c.id for c in CLAIMS]
    suite = root.find("testsuite")
    assert suite is not None and suite.get("failures") == "0"
    assert not root.findall(".//failure") and not root.findall(".//error")
    assert not list(tmp_path.rglob("*.tmp")), "temporary files left behind"


def _fake_registry(monkeypatch: pytest.MonkeyPatch, *extra: Claim) -> None:
    section = registry.SECTIONS[0]
    good = (
        Claim("fake.claim", "0 = 0", section, "claim", lambda: sp.S.Zero),
        Claim("fake.control", "1 != 0", section, "control", lambda: sp.Matrix([0, 1])),
    )
    monkeypatch.setattr(registry, "claims", lambda: (*good, *extra))


def _run_fake(tmp_path: Path, *args: str) -> tuple[int, dict, ET.Element]:
    json_path, junit_path = tmp_path / "r.json", tmp_path / "r.xml"
    code = runner.main(["--json", str(json_path), "--junit", str(junit_path), *args])
    report = json.loads(json_path.read_text(encoding="utf-8"))
    return code, report, ET.parse(junit_path).getroot()


def test_fake_registry_passes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _fake_registry(monkeypatch)
    code, report, junit = _run_fake(tmp_path)
    assert code == 0 and report["ok"] is True
    assert [c["status"] for c in report["claims"]] == ["proved", "not proved"]
    assert len(junit.findall(".//testcase")) == 2


def test_control_that_holds_fails_the_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    x = sp.Symbol("x")
    _fake_registry(
        monkeypatch,
        Claim("fake.bad_control", "x - x != 0", registry.SECTIONS[0], "control", lambda: x - x),
    )
    code, report, junit = _run_fake(tmp_path)
    assert code == 1 and report["ok"] is False
    bad = report["claims"][-1]
    assert bad["holds"] is True and bad["status"] == "holds"
    suite = junit.find("testsuite")
    assert suite is not None and suite.get("failures") == "1"


def test_failing_claim_fails_the_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    x = sp.Symbol("x")
    _fake_registry(
        monkeypatch, Claim("fake.false", "x = 0", registry.SECTIONS[0], "claim", lambda: x + 1)
    )
    code, report, junit = _run_fake(tmp_path)
    assert code == 1 and report["ok"] is False
    assert report["claims"][-1]["status"] == "not proved"
    assert report["claims"][-1]["residual"] == "x + 1"
    failure = junit.find(".//testcase[@name='fake.false']/failure")
    assert failure is not None and "x + 1" in (failure.text or "")


def test_crashing_check_is_an_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def crash() -> sp.Expr:
        raise RuntimeError("boom")

    _fake_registry(monkeypatch, Claim("fake.crash", "?", registry.SECTIONS[0], "claim", crash))
    code, report, junit = _run_fake(tmp_path)
    assert code == 1
    assert report["claims"][-1]["status"] == "error"
    assert "RuntimeError: boom" in report["claims"][-1]["residual"]
    assert junit.find(".//testcase[@name='fake.crash']/error") is not None


@pytest.mark.skipif(not hasattr(signal, "SIGALRM"), reason="per-claim timeout needs SIGALRM")
@pytest.mark.parametrize("kind", ["claim", "control"])
def test_timeout_fails_the_run(kind: Kind, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def slow() -> sp.Expr:
        time.sleep(5)
        return sp.S.Zero

    _fake_registry(monkeypatch, Claim("fake.slow", "slow", registry.SECTIONS[0], kind, slow))
    start = time.perf_counter()
    code, report, _ = _run_fake(tmp_path, "--timeout", "0.2")
    assert time.perf_counter() - start < 4
    assert code == 1
    slow_result = report["claims"][-1]
    assert slow_result["status"] == "timeout" and slow_result["holds"] is False
    assert slow_result["residual"] == "timeout after 0.2s"


@pytest.mark.skipif(not hasattr(signal, "SIGALRM"), reason="needs SIGALRM")
def test_time_limit_restores_an_enclosing_alarm() -> None:
    fired: list[int] = []

    def outer(signum: int, frame: object) -> None:
        fired.append(signum)

    previous = signal.signal(signal.SIGALRM, outer)
    saved = signal.setitimer(signal.ITIMER_REAL, 30)
    try:
        with runner.time_limit(5):
            pass
        assert signal.getsignal(signal.SIGALRM) is outer
        assert 25 < signal.getitimer(signal.ITIMER_REAL)[0] <= 30
        assert not fired
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if saved[0] > 0:
            signal.setitimer(signal.ITIMER_REAL, *saved)


def test_only_list_and_unknown_ids(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    json_path = tmp_path / "only.json"
    ids = ["sparsification.count", "control.sparsification.count.every_layer"]
    args = ["--json", str(json_path)]
    for claim_id in ids:
        args += ["--only", claim_id]
    assert runner.main(args) == 0
    assert [c["id"] for c in json.loads(json_path.read_text())["claims"]] == ids

    assert runner.main(["--list"]) == 0
    listing = capsys.readouterr().out
    assert all(c.id in listing for c in CLAIMS)

    assert runner.main(["--only", "no.such.claim"]) == 2
    assert "no.such.claim" in capsys.readouterr().err


def test_zero_test_detects_broken_updates() -> None:
    """The checks are not vacuous: dropping one update of a proven rule leaves a residual."""
    q = cayley(2)
    a, g_prev, net = layer_slice(2)
    without_psi = net.with_layers(
        weights={0: q.T * net.weights[0], 1: net.weights[1] * q},
        biases={0: q.T * net.biases[0]},
    )
    assert not is_zero(trace_residual(forward(a, net, g_prev), forward(a, without_psi, g_prev)))

    silent = silence(net, 0, 1)
    without_o = degenerate(silent, 0, 1).with_layers(lengths={0: silent.lengths[0]})
    residual = trace_residual(forward(a, silent, g_prev), forward(a, without_o, g_prev))
    assert residual[0] == -(sp.Symbol("b1", real=True) ** 2)
    assert not is_zero(residual)


def test_reduce_and_is_zero() -> None:
    x, y = sp.symbols("x y", real=True)
    assert reduce(1 / (x + 1) + 1 / (x - 1) - 2 * x / (x**2 - 1)) == 0
    assert reduce(g(sp.sqrt(x**2 + y)) * (x + 1) - g(sp.sqrt(y + x**2)) * x) != 0
    assert is_zero(sp.Matrix([0, (x + y) ** 2 - x**2 - 2 * x * y - y**2]))
    assert not is_zero(sp.Matrix([0, x]))
    # no heuristic fallback: an identity reduce cannot see is not "proved"
    assert not is_zero(sp.Matrix([sp.sin(x) ** 2 + sp.cos(x) ** 2 - 1]))


def test_expressions_match_the_formulas() -> None:
    z, o, f = expressions.activation_expression(2)
    value = f.subs({z[0]: 3, z[1]: 4, o: 0})
    assert sp.simplify(value - sp.Matrix([3, 4]) * sp.tanh(5) / 5) == sp.zeros(2, 1)
    with pytest.raises(ValueError):
        expressions.activation_expression(0)

    symbols, o_new, psi_new = expressions.degeneration_update(k=2, width_next=3)
    b, w, psi = (cast(sp.Matrix, symbols[name]) for name in ("b_star", "W_star", "psi"))
    assert (b.shape, w.shape, psi.shape, psi_new.shape) == ((2, 1), (3, 2), (3, 1), (3, 1))
    assert sp.expand(o_new - symbols["o"] - (b.T * b)[0, 0]) == 0
    assert sp.expand(psi_new - psi - w * b) == sp.zeros(3, 1)


def test_proofs_do_not_import_torch() -> None:
    code = "import sys, proofs; proofs.run(['sparsification.count']); print('torch' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        cwd=Path(__file__).parent.parent,
    )
    assert out.stdout.strip() == "False"
    sources = Path(runner.__file__).parent.glob("*.py")
    assert not [p.name for p in sources if "import torch" in p.read_text(encoding="utf-8")]


# ---------------------------------------------------------------- soundness of the argument step
def _one_coordinate(z: sp.MatrixBase, o: sp.Expr) -> sp.Expr:
    """Not isotropic: ``z_0^2`` only, or ``z^T D z`` for a matrix expression of symbolic size."""
    if is_matrix_expression(z):
        weight = sp.MatrixSymbol("D", z.rows, z.rows)
        return sp.sqrt(o + scalarise(z.T * weight * z))
    return sp.sqrt(o + z[0] ** 2)


def _ignores_o(z: sp.MatrixBase, o: sp.Expr) -> sp.Expr:
    """Ignores the intrinsic length, so degeneration's o update has nothing to keep."""
    return sp.sqrt(_symbolic.sq_norm(z))


_BROKEN_LENGTHS = {"one_coordinate": _one_coordinate, "ignores_o": _ignores_o}


@pytest.mark.parametrize("name", sorted(_BROKEN_LENGTHS))
def test_broken_activation_fails_the_claims(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The gain's argument and the recorded ``N^2`` come from one object: breaking the length
    must make claims fail through the ordinary runner (it once left all 24 "proved")."""
    from isoproof.proofs import equivariance

    broken = _BROKEN_LENGTHS[name]
    monkeypatch.setattr(_symbolic, "radial_length", broken)
    monkeypatch.setattr(equivariance, "radial_length", broken)
    ids = [
        "equivariance.any_n",
        "equivariance.rotation",
        "reparameterisation.any_n",
        "reparameterisation.rotation",
        "neurodegeneration.any_width",
        "neurodegeneration.exact",
    ]
    results = {r.id: r for r in runner.run(ids).results}
    if name == "one_coordinate":
        proved = [i for i, r in results.items() if r.holds]
        assert not proved, f"claims still proved with a non-isotropic length: {proved}"
    else:  # o only matters where o changes: the degeneration claims
        assert not results["neurodegeneration.any_width"].holds
        assert not results["neurodegeneration.exact"].holds


# ---------------------------------------------------------------- tests of the prover itself
def _zero_test_always_true(residual):
    return True


def _gains_always_substituted(before, after):
    subs = dict(zip(after.gains, before.gains, strict=True))
    pairs = zip(after.radicands, before.radicands, strict=True)
    residuals = [reduce(a.xreplace(subs) - b) for a, b in pairs]
    return sp.Matrix(residuals), subs


def _reduce_zero_for_symbols(expr):
    if isinstance(expr, sp.MatrixBase):
        return sp.zeros(*expr.shape)
    expr = sp.sympify(expr)
    return expr if expr.is_Number else sp.S.Zero


#: Broken engines: (function of ``proofs._symbolic`` whose code is replaced, replacement).
#: Replacing ``__code__`` breaks every caller, including names imported elsewhere.
ENGINE_BREAKS = {
    "zero_test_always_true": (_symbolic.is_zero, _zero_test_always_true),
    "gains_always_substituted": (_symbolic.match_gains, _gains_always_substituted),
    "reduce_zero_for_symbols": (_symbolic.reduce, _reduce_zero_for_symbols),
}
#: Fast claims and controls that a broken engine must trip over.
ENGINE_SUBSET = [
    "prover.soundness",
    "neurodegeneration.any_width",
    "control.neurodegeneration.any_width.without_o",
    "control.equivariance.any_n.no_hypothesis",
    "control.neurogenesis.any_width.bias",
]


@pytest.mark.parametrize("name", sorted(ENGINE_BREAKS))
def test_broken_engine_fails_the_run(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    target, replacement = ENGINE_BREAKS[name]
    monkeypatch.setattr(target, "__code__", replacement.__code__)
    report = runner.run(ENGINE_SUBSET)
    assert not report.ok
    status = {r.id: r.status for r in report.results}
    if name == "gains_always_substituted":
        assert status["prover.soundness"] == "not proved", status
    else:  # every control is "proved" by a zero test that cannot say no
        assert all(status[i] == "holds" for i in ENGINE_SUBSET if i.startswith("control.")), status


_BREAK_SCRIPT = """
import sys
import sympy as sp
from proofs import _symbolic
from proofs._symbolic import reduce

def _gains_always_substituted(before, after):
    subs = dict(zip(after.gains, before.gains, strict=True))
    pairs = zip(after.radicands, before.radicands, strict=True)
    residuals = [reduce(a.xreplace(subs) - b) for a, b in pairs]
    return sp.Matrix(residuals), subs

_symbolic.match_gains.__code__ = _gains_always_substituted.__code__
from proofs import runner
sys.exit(runner.main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_python_m_proofs_exits_non_zero_with_a_broken_engine(tmp_path: Path) -> None:
    """The whole ``python -m proofs`` run, in a subprocess, with gain matching that always
    substitutes (which once left every claim "proved"): exit 1, and the prover's own check
    is the claim that fails."""
    json_path = tmp_path / "broken.json"
    out = subprocess.run(
        [sys.executable, "-c", _BREAK_SCRIPT, "--json", str(json_path)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=Path(__file__).parent.parent,
    )
    assert out.returncode == 1, out.stdout[-2000:] + out.stderr[-2000:]
    report = json.loads(json_path.read_text(encoding="utf-8"))
    failed = [c["id"] for c in report["claims"] if c["holds"] is (c["kind"] == "control")]
    assert "prover.soundness" in failed, failed


def test_scalarise_uses_orthogonality_only_as_stated() -> None:
    """``Q^T Q`` cancels for an orthogonal symbol only; ``Q^T`` and ``Q`` are not confused;
    two symbols sharing a name are refused (their words would be merged)."""
    from isoproof.proofs._matrices import orthogonal

    n = sp.Symbol("n", integer=True, positive=True)
    q, p, z = orthogonal("Q", n), sp.MatrixSymbol("P", n, n), sp.MatrixSymbol("z", n, 1)
    assert scalarise(q.T * q * z - z) == 0
    assert scalarise(q * q.T * z - z) == 0
    assert scalarise(p.T * p * z - z) != 0
    assert scalarise(q * z - q.T * z) != 0
    assert scalarise(z.T * q * z - z.T * q.T * z) == 0  # a 1 x 1 word is its own transpose
    with pytest.raises(ValueError, match="one matrix symbol per name"):
        scalarise(q * sp.MatrixSymbol("Q", n, n))


def test_main_refuses_a_directory_report_path_before_proving(tmp_path: Path, monkeypatch, capsys):
    def started(*args, **kwargs):
        raise RuntimeError("proofs ran before the report paths were checked")

    monkeypatch.setattr(runner, "run", started)
    assert runner.main(["--junit", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "expected a file path for --junit, got a directory" in err


def test_main_refuses_a_report_under_a_file_before_proving(tmp_path: Path, monkeypatch, capsys):
    """A file where the report's folder would be created: one line, exit 2, before any proof
    (every proof ran, then a FileExistsError traceback, exit 1)."""

    def started(*args, **kwargs):
        raise RuntimeError("proofs ran before the report paths were checked")

    monkeypatch.setattr(runner, "run", started)
    (tmp_path / "plain").write_text("x")
    for flag in ("--json", "--junit"):
        assert runner.main([flag, str(tmp_path / "plain" / "sub" / "report")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1, err
        assert (
            f"expected a writable folder for {flag}, got {str(tmp_path / 'plain')!r} (a file)"
            in err
        )


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "soon"])
def test_timeout_must_be_a_finite_number_of_seconds(value: str, monkeypatch, capsys) -> None:
    """--timeout nan made every claim an "error" (exit 1): now a usage error, exit 2, in
    ``python -m proofs`` and ``isoproof prove`` alike."""
    from isoproof.app.cli import main as isoproof_main

    monkeypatch.setattr(runner, "run", lambda *a, **k: pytest.fail("proofs ran"))
    for main in (runner.main, lambda argv: isoproof_main(["prove", *argv])):
        with pytest.raises(SystemExit) as info:
            main(["--timeout", value])
        assert info.value.code == 2
        err = capsys.readouterr().err
        assert f"expected a finite number of seconds >= 0 (0: no limit), got {value!r}" in err


def test_main_into_a_closed_pipe_is_quiet() -> None:
    """``python -m proofs --list | head -1`` with the reader gone: no traceback, status 141."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run([sys.executable, "-m", "proofs", "--list"], stdout=write_end,
                              stderr=subprocess.PIPE, text=True, cwd=ROOT, timeout=120)  # fmt: skip
    finally:
        os.close(write_end)
    assert (done.returncode, done.stderr) == (141, "")


def test_report_path_check_words_errors_as_the_core_does(tmp_path: Path) -> None:
    """``python -m proofs`` and ``isoproof prove`` refuse the same paths with the same line."""
    from isoproof.proofs.report import report_path_problem

    from isoproof.exceptions import IsoproofError
    from isoproof.files import check_folder

    (tmp_path / "plain").write_text("x")
    for folder in (tmp_path / "plain", tmp_path / "plain" / "deeper", tmp_path / "new"):
        problem = report_path_problem(folder / "r.json", "--json")
        try:
            check_folder(folder, "--json")
            core = None
        except IsoproofError as e:
            core = str(e)
        assert problem == core, folder
