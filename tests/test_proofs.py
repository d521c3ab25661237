"""The SymPy proofs: one test per registered claim, plus the runner, reports and controls."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import cast

import pytest
import sympy as sp
from isoproof.proofs import expressions, registry, runner
from isoproof.proofs._symbolic import (
    cayley,
    forward,
    g,
    is_zero,
    layer_slice,
    nonzero_number,
    reduce,
    trace_residual,
)
from isoproof.proofs.neurodegeneration import degenerate, silence
from isoproof.proofs.registry import Claim, Kind, claims
from isoproof.proofs.report import Result

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
        assert not result.holds and result.status == "refuted", (
            f"control {claim.id} ({claim.statement}) was not refuted: status {result.status}, "
            f"residual {result.residual}"
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


def test_every_issue_control_is_registered() -> None:
    controls = {c.id for c in CLAIMS if c.kind == "control"}
    assert {
        "control.elementwise_tanh",
        "control.degeneration_without_o",
        "control.degeneration_without_psi",
        "control.degeneration_own_psi",
        "control.non_orthogonal_q",
    } <= controls


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
    assert isinstance(report["seconds"], float)
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
    assert [c["status"] for c in report["claims"]] == ["proved", "refuted"]
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


def test_undecided_control_fails_the_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    x = sp.Symbol("x")
    _fake_registry(
        monkeypatch,
        Claim("fake.vague_control", "x != 0?", registry.SECTIONS[0], "control", lambda: x),
    )
    code, report, _ = _run_fake(tmp_path)
    assert code == 1
    assert report["claims"][-1]["status"] == "undecided"
    assert report["claims"][-1]["holds"] is False


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
    ids = ["sparsification.count", "control.elementwise_tanh"]
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


def test_reduce_and_nonzero_number() -> None:
    x, y = sp.symbols("x y", real=True)
    assert reduce(1 / (x + 1) + 1 / (x - 1) - 2 * x / (x**2 - 1)) == 0
    assert reduce(g(sp.sqrt(x**2 + y)) * (x + 1) - g(sp.sqrt(y + x**2)) * x) != 0
    assert is_zero(sp.Matrix([0, (x + y) ** 2 - x**2 - 2 * x * y - y**2]))
    assert not is_zero(sp.Matrix([0, x]))
    assert nonzero_number(sp.Matrix([x, sp.tanh(sp.Rational(1, 3)) - sp.Rational(1, 3)]))
    assert not nonzero_number(sp.Matrix([x, sp.Float("1e-30")]))


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
_BROKEN_LENGTHS = {
    # not isotropic: the length reads one coordinate only
    "one_coordinate": lambda z, o: sp.sqrt(o + z[0] ** 2),
    # ignores the intrinsic length, so degeneration's o update has nothing to keep
    "ignores_o": lambda z, o: sp.sqrt(sum((e**2 for e in z), sp.S.Zero)),
}


@pytest.mark.parametrize("name", sorted(_BROKEN_LENGTHS))
def test_broken_activation_fails_the_claims(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The gain's argument and the recorded ``N^2`` come from one object: breaking the length
    must make claims fail through the ordinary runner (it once left all 24 "proved")."""
    from isoproof.proofs import _symbolic, equivariance

    broken = _BROKEN_LENGTHS[name]
    monkeypatch.setattr(_symbolic, "radial_length", broken)
    monkeypatch.setattr(equivariance, "radial_length", broken)
    ids = ["equivariance.rotation", "reparameterisation.rotation", "neurodegeneration.exact"]
    results = [runner.evaluate(c, timeout=runner.DEFAULT_TIMEOUT) for c in CLAIMS if c.id in ids]
    assert len(results) == len(ids)
    failed = [r.id for r in results if r.holds]
    if name == "one_coordinate":
        assert not failed, f"claims still proved with a non-isotropic length: {failed}"
    else:  # o only matters where o changes: the degeneration claim
        assert not next(r for r in results if r.id == "neurodegeneration.exact").holds
