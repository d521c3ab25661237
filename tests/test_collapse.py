"""Collapse (issue 13): the collapsed model is the model's function, saved, exported, refused."""

from __future__ import annotations

import copy

import numpy as np
import onnx
import pytest
import torch
from conftest import assert_unchanged, batch, make_model, snapshot
from isoproof.exporters import export_onnx, to_float16, verify_onnx
from isoproof.exporters.graph import ops_used

import isoproof as ip
from isoproof.app.cli import main
from isoproof.collapse import FORMAT, collapsed_parameters, factors
from isoproof.testing import adversarial_inputs, assert_function_preserved

WIDTHS = [5, 9, 4, 11, 3]  # wider and narrower than n0 + l + 1: both branches of the basis
RADIALS = ("tanh", "softsign", "log1p", "shifted_relu:0.3")


def _check(model: ip.IsotropicMLP, collapsed: torch.nn.Module, atol: float = 1e-12) -> float:
    """Max error / max(1, max|y|) over every adversarial set (huge inputs: |y| ~ 1e30 for the
    unbounded profiles), asserted by the shared tester."""
    worst = 0.0
    model.eval()
    for x in adversarial_inputs(model.linears[0], 8).values():
        err = assert_function_preserved(model, collapsed, x, atol=atol)
        worst = max(worst, err / max(1.0, float(model(x).abs().max())))
    return worst


@pytest.mark.parametrize("psi", ["decay", "trainable", "constant", "none"])
@pytest.mark.parametrize("length", ["trainable", "constant", "none"])
def test_every_psi_and_length_mode(psi, length):
    model = make_model(WIDTHS, psi=psi, intrinsic_length=length, seed=3)
    assert _check(model, ip.collapse(model)[0]) <= 1e-12


@pytest.mark.parametrize("radial", RADIALS)
def test_every_radial_profile_with_diagonal_maps(radial):
    model = make_model([6, 12, 12, 12, 4], radial=radial, seed=4)
    ip.sparsify(model)
    assert model.diagonal_layers  # the collapse reads diagonal maps through their dense view
    assert _check(model, ip.collapse(model)[0]) <= 1e-12


def test_eps_clamp_is_reproduced():
    """Inputs on the clamp: N = eps, not sqrt(o + |z|^2), in both forms."""
    model = make_model([4, 6, 6, 2], intrinsic_length="none", psi="none", seed=5)
    with torch.no_grad():
        for lin in model.linears:
            lin.bias.zero_()
    x = torch.zeros(3, 4, dtype=torch.float64)
    x[1, 0] = 1e-5  # |z_0| << eps = 1e-3
    collapsed = ip.collapse(model)[0]
    assert _check(model, collapsed) <= 1e-12
    y = model(x)
    assert torch.equal(y[0], torch.zeros_like(y[0]))
    assert float((collapsed(x) - y).abs().max()) <= 1e-15


def test_after_grow_prune_sparsify_and_shapes():
    model = make_model([6, 10, 10, 10, 3], seed=6)
    ip.grow(model, 1, 3, generator=torch.Generator().manual_seed(0))
    ip.prune(model, 0, n=4)
    ip.sparsify(model)
    collapsed, receipt = ip.collapse(model, probe=batch(6))
    assert _check(model, collapsed) <= 1e-12
    x = torch.randn(2, 3, 6, dtype=torch.float64)  # any leading shape
    assert collapsed(x).shape == (2, 3, 3)
    assert receipt.op == "collapse" and receipt.exact and receipt.max_abs_change <= 1e-12
    assert receipt.params_before == model.count_parameters()
    assert receipt.params_after == collapsed.count_parameters()
    assert receipt.params_after == collapsed_parameters(model.widths)


def test_single_map_and_narrow_layers():
    for widths in ([3, 2], [3, 1, 2], [2, 1, 1, 1, 2]):
        model = make_model(widths, seed=7)
        assert _check(model, ip.collapse(model)[0]) <= 1e-12


def test_stored_numbers_formula_and_win():
    model = make_model([16, 64, 64, 64, 4], seed=8)
    collapsed = ip.collapse(model)[0]
    ranks = [min(n, 16 + l + 1) for l, n in enumerate(model.widths[1:-1])]
    assert collapsed.ranks == ranks == [17, 18, 19]
    expected = sum(r * (16 + l + 1) for l, r in enumerate(ranks)) + 4 * (16 + 4) + 3
    assert collapsed.count_parameters() == expected < model.count_parameters()


def test_float32_is_no_worse_than_the_dense_float32_forward():
    model = make_model([32, 256, 256, 256, 10], seed=9, scale=1.0)
    model.eval()
    dense32 = copy.deepcopy(model).float()
    collapsed32 = ip.collapse(model, dtype=torch.float32)[0]
    assert collapsed32.dtype == torch.float32
    report = {}
    with torch.no_grad():
        g = torch.Generator().manual_seed(0)  # deterministic: the margin is data-dependent
        for name, x in adversarial_inputs(model.linears[0], 16, generator=g).items():
            truth = model(x)
            scale = max(1.0, float(truth.abs().max()))
            d = float((dense32(x.float()).double() - truth).abs().max()) / scale
            c = float((collapsed32(x.float()).double() - truth).abs().max()) / scale
            report[name] = (c, d)
    print("float32 error vs float64 truth (collapsed, dense):", report)
    assert all(np.isfinite(c) for c, _ in report.values())
    assert max(c for c, _ in report.values()) <= max(d for _, d in report.values())
    for c, d in report.values():
        assert c <= max(d, 1e-9)


def test_negative_control_without_psi_fails():
    """The same factors with the psi term dropped do not reproduce the model."""
    model = make_model([4, 7, 7, 3], seed=10)
    x = batch(4)
    good = factors(model)[-1]
    bad = factors(model, broken="psi")[-1]
    assert not torch.allclose(good[1], bad[1])
    broken = ip.collapse(model)[0]
    with torch.no_grad():
        broken.consts[-1].copy_(bad[1])
    with pytest.raises(AssertionError, match="function changed"):
        assert_function_preserved(model, broken, x)


def test_refusals_leave_the_model_unchanged():
    model = make_model([4, 6, 6, 2], seed=11)
    before = snapshot(model)
    with pytest.raises(ip.NotCollapsibleError, match="expected an IsotropicMLP, got Sequential"):
        ip.collapse(torch.nn.Sequential(torch.nn.Linear(4, 2)))
    ngc, _ = ip.ngc_compress(model, keep=0.5, calibration=batch(4))
    with pytest.raises(ip.NotCollapsibleError, match="got NGCLinear"):
        ip.collapse(ngc)
    with pytest.raises(ip.WidthError, match="last dimension 4"):
        ip.collapse(model, probe=batch(5))
    bad = copy.deepcopy(model)
    with torch.no_grad():
        bad.linears[1].weight[0, 0] = float("nan")
    with pytest.raises(ip.NonFiniteError, match=r"linears\.1\.weight"):
        ip.collapse(bad)
    assert_unchanged(model, before)
    model.train()
    ip.collapse(make_model([4, 6, 2], psi="none"), probe=batch(4))
    assert model.training


def test_probe_does_not_touch_gain_tracking():
    model = make_model([4, 6, 6, 2], psi="none", seed=12)
    model.train()
    before = snapshot(model)
    ip.collapse(model, probe=batch(4))
    assert_unchanged(model, before)  # gain_means unchanged: the probe ran in eval mode
    assert model.training


def test_save_load_roundtrip_and_bad_config(tmp_path):
    model = make_model([5, 9, 9, 3], seed=13)
    ip.sparsify(model)
    collapsed = ip.collapse(model, dtype=torch.float32)[0]
    path = ip.save(collapsed, tmp_path / "c.safetensors")
    assert ip.io.read_metadata(path)["format"] == FORMAT
    loaded = ip.load(path)
    x = batch(5, dtype=torch.float32)
    assert isinstance(loaded, ip.CollapsedMLP) and torch.equal(loaded(x), collapsed(x))
    with pytest.raises(ip.IsoproofError, match="expected ranks"):
        ip.CollapsedMLP.from_config({**collapsed.config(), "ranks": [99, 1]})
    with pytest.raises(ip.IsoproofError, match=r"expected key 'ranks'"):
        ip.CollapsedMLP.from_config({k: v for k, v in collapsed.config().items() if k != "ranks"})


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("collapse")
    model = make_model([8, 24, 24, 24, 3], dtype=torch.float32, seed=14)
    ip.sparsify(model)
    collapsed = ip.collapse(model)[0]
    return model, collapsed, export_onnx(collapsed, tmp / "c.onnx"), tmp


def test_onnx_parity_in_both_evaluators(exported):
    model, collapsed, path, _ = exported
    report = verify_onnx(path, collapsed)  # onnxruntime and the reference evaluator
    assert report.ok and report.max_abs <= 1e-5
    assert {r.evaluator for r in report.results} == {"onnxruntime", "reference"}
    ops = ops_used(onnx.load(str(path)))
    # one MatMul with the input; the others are the norms' (y*y) @ 1, one per hidden layer
    assert ops["MatMul"] == 1 + len(collapsed.activations)
    assert "Gemm" not in ops and not report.disallowed_ops
    # the file also reproduces the source model (a float64 copy of it)
    assert verify_onnx(path, model).ok


def test_onnx_float16(exported):
    _, collapsed, path, tmp = exported
    report = verify_onnx(to_float16(path, tmp / "c.fp16.onnx"), collapsed)
    assert report.ok and report.kind == "float16"


def test_cli_collapse_and_info(tmp_path, capsys):
    model = make_model([6, 16, 16, 2], dtype=torch.float32, seed=15)
    ckpt = ip.save(model, tmp_path / "m.safetensors")
    out = tmp_path / "c.onnx"
    argv = ["collapse", str(ckpt), "-o", str(out), "--verify", "--save", str(tmp_path / "c.st")]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "collapse: widths [6, 16, 16, 2]" in text and "verification: PASS" in text
    assert main(["info", str(tmp_path / "c.st")]) == 0
    info = capsys.readouterr().out
    assert "collapsed" in info and "ranks" in info and "[7, 8]" in info
    # user errors: one line, exit 2
    assert main(["collapse", str(ckpt), "-o", str(tmp_path / "c.txt")]) == 2
    assert "expected an output path ending in .onnx" in capsys.readouterr().err
    assert main(["collapse", str(tmp_path / "c.st"), "-o", str(out)]) == 2
    assert "expected an IsotropicMLP, got CollapsedMLP" in capsys.readouterr().err


def test_bridge_proof_expressions_match_the_torch_code():
    """The factors and the collapsed output that ``proofs/collapse.py`` proves, lambdified at
    a torch model's numbers, equal ``isoproof.collapse``'s (float64)."""
    import sympy as sp
    from isoproof.proofs import collapse as proof
    from isoproof.proofs._symbolic import tanh_profile, vector

    from isoproof.collapse import factors as torch_factors

    widths = [2, 3, 3, 2]
    model = make_model(widths, seed=16)
    net = proof.network(widths)
    values = {}
    for l, lin in enumerate(model.linears):
        values.update(zip(net.weights[l], lin.weight.detach().reshape(-1).tolist(), strict=True))
        values.update(zip(net.biases[l], lin.bias.detach().tolist(), strict=True))
        if l >= 1:
            values.update(zip(net.psis[l], model.psi[l - 1].detach().tolist(), strict=True))
    for l, act in enumerate(model.activations):
        values[net.lengths[l]] = float(act.o.detach())
    for (m, u), (tm, tu) in zip(proof.factors(net), torch_factors(model), strict=True):
        got = np.array(m.row_join(u).xreplace(values).evalf(), dtype=float)
        np.testing.assert_allclose(got, torch.cat([tm, tu], 1).numpy(), rtol=0, atol=1e-12)
    x = vector("x", 2)
    trace = proof.collapsed_forward(x, net, [None, None], profile=tanh_profile)
    fn = sp.lambdify(list(x), list(trace.output.xreplace(values)), modules="numpy")
    pts = batch(2, 8)
    expected = np.array([fn(*row) for row in pts.tolist()], dtype=float)
    np.testing.assert_allclose(ip.collapse(model)[0](pts).numpy(), expected, rtol=0, atol=1e-12)
