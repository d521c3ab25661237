"""NGC compression (isoproof.ngc) and the stability proxy (isoproof.stability).

Every fit is checked against maths written again here: activation-aware SVD from its definition,
exact reconstruction at full rank, the parameter formula, the least-squares optimality of the
alternating refinement, and Lyapunov signs of linear maps with known spectra.
"""

from __future__ import annotations

import itertools
import json
import math

import pytest
import torch
from conftest import assert_unchanged, batch, make_model, snapshot
from torch import nn

import isoproof as ip
from isoproof.ngc import NGCLinear, affine_inputs, fit_group, ngc_compress, ngc_rank
from isoproof.stability import stability

F64 = torch.float64


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """The fits are many tiny float64 matmuls: one thread avoids oversubscription."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tanh_mlp(widths, *, seed=0, dtype=F64, bias=True) -> nn.Sequential:
    g = torch.Generator().manual_seed(seed)
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(widths)):
        lin = nn.Linear(a, b, bias=bias, dtype=dtype)
        with torch.no_grad():
            lin.weight.copy_(torch.randn(b, a, generator=g, dtype=dtype) / math.sqrt(a))
            if bias:
                lin.bias.copy_(0.1 * torch.randn(b, generator=g, dtype=dtype))
        layers.append(lin)
        if i < len(widths) - 2:
            layers.append(nn.Tanh())
    return nn.Sequential(*layers)


def gram(x: torch.Tensor) -> torch.Tensor:
    return x.T @ x / x.shape[0]


def activation_aware_svd(W: torch.Tensor, X: torch.Tensor, r: int) -> torch.Tensor:
    """SVD-LLM from its definition: S = chol(X^T X), W ~= trunc_r(W S) S^{-1}."""
    S = torch.linalg.cholesky(X.T @ X)
    U, s, Vh = torch.linalg.svd(W @ S)
    return (U[:, :r] * s[:r]) @ Vh[:r] @ torch.linalg.inv(S)


def objective(Ws, Gs, P, Bs) -> float:
    return sum(
        float(((W - B @ P.T) @ G * (W - B @ P.T)).sum()) for W, G, B in zip(Ws, Gs, Bs, strict=True)
    )


# ---------------------------------------------------------------------------- closed form
def test_one_member_group_equals_activation_aware_svd():
    model = tanh_mlp([12, 16, 16, 16, 3], seed=1)
    x = batch(12, 400, seed=2)
    new, report = ngc_compress(model, calibration=x, keep=0.5, groups="none")
    inputs = affine_inputs(model, x)
    r = ngc_rank(0.5, 16, [16])
    assert report.ranks == (r, r) == (4, 4)
    for i in (1, 2):
        ref = activation_aware_svd(model[2 * i].weight.detach(), inputs[i], r)
        got = new[2 * i].weight.detach()
        assert isinstance(new[2 * i], NGCLinear)
        assert float((got - ref).abs().max()) < 1e-10
        # and it is really rank r (and strictly better in the X-metric than plain SVD)
        assert int(torch.linalg.matrix_rank(got)) == r
        U, s, Vh = torch.linalg.svd(model[2 * i].weight.detach())
        plain = (U[:, :r] * s[:r]) @ Vh[:r]
        W = model[2 * i].weight.detach()
        assert objective([W], [gram(inputs[i])], torch.eye(16, dtype=F64), [got]) < objective(
            [W], [gram(inputs[i])], torch.eye(16, dtype=F64), [plain]
        )


def test_full_rank_reconstructs_exactly():
    model = make_model([24, 16, 16, 16, 16, 4], seed=2)
    x = batch(24, 300, seed=3)
    new, report = ngc_compress(model, calibration=x, rank=16, dense_factor=None)
    assert report.groups[0].layers == (1, 2, 3) and report.ranks == (16,)
    for i in (1, 2, 3):
        err = float((new.linears[i].weight - model.linears[i].weight).abs().max())
        assert err < 1e-10, (i, err)
    assert max(m.error for m in report.members) < 1e-10
    ip.testing.assert_function_preserved(model, new, batch(24, 50, seed=9), atol=1e-10)


def test_shared_inputs_make_the_stacked_svd_optimal():
    """Members reading the same X: the whitened stacked SVD is the Eckart-Young optimum, which the
    least-squares steps cannot improve (a fixed point of both)."""
    g = torch.Generator().manual_seed(5)
    X = torch.randn(200, 10, generator=g, dtype=F64) @ torch.randn(10, 10, generator=g, dtype=F64)
    Ws = [torch.randn(m, 10, generator=g, dtype=F64) for m in (6, 9, 4)]
    G = gram(X)
    P, Bs, _ = fit_group(Ws, [G, G, G], 5)
    # the optimum of sum_k |X (W_k - B_k P^T)^T|^2 over rank-5 products, from its definition
    stacked = activation_aware_svd(torch.cat(Ws), X, 5)
    torch.testing.assert_close(torch.cat([B @ P.T for B in Bs]), stacked, rtol=0, atol=1e-10)
    # balanced gauge: P^T P = B^T B = diag(singular values of the stacked product)
    s = torch.linalg.svdvals(stacked)[:5]
    B = torch.cat(Bs)
    torch.testing.assert_close(P.T @ P, torch.diag(s), rtol=0, atol=1e-10)
    torch.testing.assert_close(B.T @ B, torch.diag(s), rtol=0, atol=1e-10)


def test_refinement_lowers_the_objective_for_different_inputs():
    model = make_model([20, 12, 12, 12, 12, 3], seed=4)
    inputs = affine_inputs(model, batch(20, 300, seed=5))
    Ws = [model.linears[i].weight.detach() for i in (1, 2, 3)]
    Gs = [gram(inputs[i]) for i in (1, 2, 3)]
    values = [objective(Ws, Gs, *fit_group(Ws, Gs, 5, refine=k)[:2]) for k in (0, 1, 5)]
    assert values[1] <= values[0] * (1 + 1e-12) and values[2] <= values[1] * (1 + 1e-12)
    assert values[2] < 0.99 * values[0], values
    # each B_k ends exactly optimal given P: B_k (P^T G_k P) = W_k G_k P (the gauge keeps this)
    P, Bs, _ = fit_group(Ws, Gs, 5, refine=3)
    for W, G, B in zip(Ws, Gs, Bs, strict=True):
        lhs, rhs = B @ (P.T @ G @ P), W @ G @ P
        assert float((lhs - rhs).abs().max()) < 1e-10 * float(rhs.abs().max())


def test_float32_low_dimensional_activations_stay_well_conditioned():
    """Hidden states of an isotropic MLP wider than its input span ~n0 + 2l dimensions; the rest
    of their float32 Gram is rounding noise. The fit must not chase it with huge factors (a
    whitened gauge P^T G P = I once gave |P| ~ 4e7 and a 13% output change in float32)."""
    model = make_model([8, 32, 32, 32, 4], seed=23, dtype=torch.float32)
    x, fresh = (
        batch(8, 512, seed=24, dtype=torch.float32),
        batch(8, 256, seed=25, dtype=torch.float32),
    )
    ranks = [int(torch.linalg.matrix_rank(h.double(), rtol=1e-5)) for h in affine_inputs(model, x)]
    assert ranks[1] == 9 and ranks[2] <= 11  # of 32
    new, report = ngc_compress(model, calibration=x, keep=0.5)
    assert report.ranks == (11,)
    with torch.no_grad():
        y0, y1 = model(fresh), new(fresh)
    assert float((y1 - y0).norm() / y0.norm()) < 1e-5
    P = new.linears[1].P.detach().double()
    B = torch.cat([new.linears[i].B.detach().double() for i in (1, 2)])
    torch.testing.assert_close(P.T @ P, B.T @ B, rtol=0, atol=1e-4 * float((B.T @ B).max()))
    W = max(float(model.linears[i].weight.abs().max()) for i in (1, 2))
    assert float(P.abs().max()) < 10 * W and float(B.abs().max()) < 10 * W


def test_rank_formula():
    assert ngc_rank(0.5, 128, [128, 128]) == round(0.5 * 128 * 256 / 384)  # 42.67 -> 43
    assert ngc_rank(0.3, 64, [64]) == 10  # 9.6 -> 10
    assert ngc_rank(1e-6, 8, [8]) == 1
    assert ngc_rank(1.0, 4, [100]) == 4  # never above min(n, S)


# ---------------------------------------------------------------------------- parameters
def test_sharing_saves_the_parameters_the_formula_says():
    model = make_model([24, 20, 20, 20, 20, 4], seed=6)
    x = batch(24, 200, seed=7)
    before = sum(p.numel() for p in model.parameters())
    shared, rep = ngc_compress(model, calibration=x, keep=0.4, dense_factor=None)
    n, ms = 20, [20, 20, 20]
    r = round(0.4 * n * sum(ms) / (n + sum(ms)))
    assert rep.ranks == (r,) == (6,)
    assert rep.groups[0].weights_after == r * (n + sum(ms))
    assert rep.params_before == before == model.count_parameters()
    assert rep.params_after == before - n * sum(ms) + r * (n + sum(ms))
    assert rep.params_after == sum(p.numel() for p in shared.parameters())
    # the same rank without sharing stores K - 1 more copies of P
    _, rep2 = ngc_compress(model, calibration=x, rank=r, groups="none")
    assert rep2.params_after - rep.params_after == 2 * n * r
    # P is one Parameter: one entry in parameters(), the same object in every member
    Ps = {id(shared.linears[i].P) for i in (1, 2, 3)}
    assert len(Ps) == 1
    ids = [id(p) for p in shared.parameters()]
    assert len(ids) == len(set(ids)) and id(shared.linears[1].P) in ids


def test_ngc_model_trains_with_the_shared_states_seen_once():
    model = make_model([16, 12, 12, 12, 3], seed=8)
    x, y = (
        batch(16, 64, seed=9),
        torch.randint(0, 3, (64,), generator=torch.Generator().manual_seed(0)),
    )
    new, _ = ngc_compress(model, calibration=x, keep=0.5)
    opt = torch.optim.Adam(new.parameters(), lr=1e-2)
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(new.parameters()))
    P = new.linears[1].P
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(new(x), y) + new.penalty()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert P.grad is not None and float(P.grad.abs().sum()) > 0
    assert new.linears[2].P is P  # still shared after training
    assert losses[-1] < 0.8 * losses[0]


# ---------------------------------------------------------------------------- behaviour
def test_input_model_is_not_modified_and_output_stays_close():
    model = make_model([24, 16, 16, 16, 4], seed=10)
    state = snapshot(model)
    types = [type(m) for m in model.linears]
    x = batch(24, 256, seed=11)
    new, report = ngc_compress(model, calibration=x, keep=0.6)
    assert_unchanged(model, state)
    assert [type(m) for m in model.linears] == types
    assert type(new) is ip.IsotropicMLP and new.widths == model.widths
    assert [type(m).__name__ for m in new.linears] == [
        "Linear",
        "NGCLinear",
        "NGCLinear",
        "Linear",
    ]
    with torch.no_grad():
        y0, y1 = model(x), new(x)
    change = float(torch.linalg.norm(y1 - y0) / torch.linalg.norm(y0))
    assert report.output_change == pytest.approx(change, rel=1e-9)
    assert 0 < change < 0.5
    d = report.to_dict()
    assert json.loads(json.dumps(d))["ranks"] == list(report.ranks)
    assert "rel. error" in report.table()


def test_member_with_outlying_error_stays_dense():
    """Maps 1 and 2 have rank 2 (a rank-4 P covers both exactly); map 0 is full rank and 100x
    smaller, so the joint fit sacrifices it: it must stay dense and the others refit exactly."""
    model = tanh_mlp([12, 12, 12, 12, 3], seed=12)
    g = torch.Generator().manual_seed(13)
    with torch.no_grad():
        model[0].weight.mul_(0.01)
        for i in (1, 2):
            u = torch.randn(12, 2, generator=g, dtype=F64)
            model[2 * i].weight.copy_(u @ torch.randn(2, 12, generator=g, dtype=F64) / 4)
    x = batch(12, 300, seed=14)
    new, report = ngc_compress(model, calibration=x, rank=4, groups=[[0, 1, 2]])
    assert report.dense_members == (0,)
    assert type(new[0]) is nn.Linear and torch.equal(new[0].weight, model[0].weight)
    dense = next(m for m in report.members if m.layer == 0)
    assert dense.error == 0.0 and dense.rejected_error > 0.3
    assert all(m.error < 1e-10 for m in report.members if not m.dense)
    assert report.groups[0].weights_after == 4 * (12 + 24) + 144
    assert report.output_change < 1e-10
    _, rep_all = ngc_compress(model, calibration=x, rank=4, groups=[[0, 1, 2]], dense_factor=None)
    assert rep_all.dense_members == () and rep_all.output_change > 1e-3


def test_structural_operations_and_save_refuse_ngc_models(tmp_path):
    model = make_model([12, 8, 8, 8, 3], seed=15)
    new, _ = ngc_compress(model, calibration=batch(12, 100), keep=0.5)
    state = snapshot(new)
    for op in (lambda: ip.sparsify(new), lambda: ip.prune(new, 1), lambda: ip.grow(new, 0)):
        with pytest.raises(ip.NotIsotropicError, match="NGCLinear"):
            op()
    with pytest.raises(ip.NotIsotropicError, match="NGCLinear"):
        ip.save(new, tmp_path / "m.safetensors")
    assert not (tmp_path / "m.safetensors").exists()
    assert_unchanged(new, state)
    assert isinstance(new.linears[1], NGCLinear)
    # reading is fine: the spectrum of the dense view B P^T has exactly `rank` non-zeros
    sigma = ip.singular_values(new, 1)
    assert int((sigma > 1e-12).sum()) == new.linears[1].rank == 3


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"keep": 0.0}, ip.IsoproofError, "keep in"),
        ({"keep": 1.5}, ip.IsoproofError, "keep in"),
        ({"rank": 0}, ip.IsoproofError, r"rank \(None or an int\)"),
        ({"groups": "pairs"}, ip.IsoproofError, "groups in"),
        ({"groups": [[1], [1]]}, ip.IsoproofError, "at most one group"),
        ({"groups": [[0, 1]]}, ip.WidthError, "one width"),
        ({"groups": [[7]]}, ip.LayerIndexError, r"\[0, 2\]"),
        ({"groups": [[]]}, ip.IsoproofError, "non-empty"),
        ({"groups": [["1"]]}, ip.IsoproofError, "lists of ints"),
        ({"dense_factor": 0.5}, ip.IsoproofError, "dense_factor"),
        ({"refine": -1}, ip.IsoproofError, "refine"),
    ],
)
def test_invalid_arguments_are_refused(kwargs, error, match):
    model = make_model([6, 8, 8, 3], seed=0)
    with pytest.raises(error, match=match):
        ngc_compress(model, calibration=batch(6, 20), **kwargs)


def test_invalid_models_and_calibration_are_refused():
    model = make_model([6, 8, 8, 3], seed=0)
    with pytest.raises(ip.WidthError, match=r"\[\.\.\., 6\]"):
        ngc_compress(model, calibration=batch(5, 20))
    bad = batch(6, 20)
    bad[3, 2] = math.nan
    with pytest.raises(ip.NonFiniteError):
        ngc_compress(model, calibration=bad)
    with pytest.raises(ip.IsoproofError, match=r"nn\.Sequential MLP"):
        ngc_compress(nn.GRU(6, 6), calibration=batch(6, 20))
    with pytest.raises(ip.IsoproofError, match="hidden-to-hidden"):
        ngc_compress(make_model([6, 8, 3]), calibration=batch(6, 20))
    done, _ = ngc_compress(model, calibration=batch(6, 20), keep=0.5)
    with pytest.raises(ip.IsoproofError, match=r"dense nn\.Linear, got NGCLinear"):
        ngc_compress(done, calibration=batch(6, 20), groups=[[1]])


# ---------------------------------------------------------------------------- ONNX
def test_onnx_parity_and_shared_states_stored_once(tmp_path):
    onnx = pytest.importorskip("onnx")
    from isoproof.exporters import export_onnx, verify_onnx

    model = make_model([16, 12, 12, 12, 12, 3], seed=16, dtype=torch.float32)
    x = batch(16, 200, seed=17, dtype=torch.float32)
    new, report = ngc_compress(model, calibration=x, keep=0.5, dense_factor=None)
    path = export_onnx(new, tmp_path / "ngc.onnx")
    result = verify_onnx(path, new, inputs=x, atol=1e-5, rtol=0)
    assert result.ok and result.max_abs <= 1e-5
    proto = onnx.load(str(path))
    r = report.ranks[0]
    shapes = [tuple(t.dims) for t in proto.graph.initializer]
    assert shapes.count((12, r)) == 4  # one P and three B's (all [12, r]), not 3 P's
    P = new.linears[1].P.detach().numpy()
    stored = [onnx.numpy_helper.to_array(t) for t in proto.graph.initializer]
    assert sum(a.shape == P.shape and (a == P).all() for a in stored) == 1
    weights = sum(int(a.size) for a in stored if a.ndim == 2 and a.shape != (12, 1))
    assert weights == 12 * 16 + r * (12 + 36) + 3 * 12  # first map + group + last map
    assert sum(n.op_type == "MatMul" for n in proto.graph.node) >= 3  # x @ P, not a dense Gemm


# ---------------------------------------------------------------------------- stability proxy
def iterated(A: torch.Tensor, depth: int) -> nn.Sequential:
    net = nn.Sequential(
        *[nn.Linear(A.shape[0], A.shape[0], bias=False, dtype=F64) for _ in range(depth)]
    )
    with torch.no_grad():
        for lin in net:
            lin.weight.copy_(A)
    return net


def test_stability_sign_follows_the_spectrum_along_depth():
    g = torch.Generator().manual_seed(18)
    Q = ip.testing.random_orthogonal(6, generator=g)
    A = torch.randn(6, 6, generator=g, dtype=F64)
    contracting = 0.9 * A / torch.linalg.matrix_norm(A, ord=2)  # |A|_2 = 0.9
    expanding = 1.5 * Q @ torch.diag(torch.linspace(1.0, 2.0, 6, dtype=F64)) @ Q.T  # sigma >= 1.5
    x = batch(6, 32, seed=19)
    down = stability(iterated(contracting, 6), x)
    up = stability(iterated(expanding, 6), x)
    assert down.kind == up.kind == "proxy" and down.axis == "depth"
    assert sorted(down.per_layer) == [1, 2, 3]
    assert all(v < 0 for v in down.per_layer.values()) and down.overall <= math.log(0.9) + 1e-12
    assert all(v > 0 for v in up.per_layer.values()) and up.overall >= math.log(1.5) - 1e-12
    scaled = stability(iterated(0.5 * Q, 5), x)  # exactly log 0.5 for a scaled rotation
    assert scaled.overall == pytest.approx(math.log(0.5), abs=1e-12)
    assert "proxy" in down.table() and json.dumps(down.to_dict())


def test_stability_along_a_sequence_and_skipped_layers():
    g = torch.Generator().manual_seed(20)
    A = 0.7 * ip.testing.random_orthogonal(5, generator=g)
    h = [torch.randn(4, 5, generator=g, dtype=F64)]
    for _ in range(7):
        h.append(h[-1] @ A.T)
    seq = torch.stack(h, dim=1)  # [B=4, T=8, 5], h_{t+1} = A h_t
    s = stability(iterated(torch.eye(5, dtype=F64), 3), seq)
    assert s.axis == "sequence" and sorted(s.per_layer) == [0, 1]
    assert all(v == pytest.approx(math.log(0.7), abs=1e-12) for v in s.per_layer.values())
    iso = make_model([5, 7, 7, 7, 4, 4, 4, 3], seed=21)
    d = stability(iso, batch(5, 16))
    assert d.skipped == (2, 3) and sorted(d.per_layer) == [1, 4]
    assert math.isfinite(d.overall)
    with pytest.raises(ip.IsoproofError, match="three successive hidden states"):
        stability(make_model([5, 7, 6, 3]), batch(5, 8))
    with pytest.raises(ip.WidthError, match="T >= 3"):
        stability(iso, torch.randn(2, 2, 5, dtype=F64), axis="sequence")


# ---------------------------------------------------------------------------- CLI
def test_cli_compresses_and_exports(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    from isoproof.app.cli import main

    model = make_model([64, 24, 24, 24, 10], seed=22, dtype=torch.float32)
    src = ip.save(model, tmp_path / "m.safetensors")
    out = tmp_path / "small.onnx"
    args = ["ngc", str(src), "--keep", "0.5", "--data", "digits", "--rows", "256"]
    assert main([*args, "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert out.is_file() and "rel. error" in text and "stability proxy" in text
    assert "parameters 3071 -> 2495" in text  # 2 * 24^2 weights -> r (24 + 48), r = 8
    assert main([*args, "-o", str(tmp_path / "small.pt")]) == 2
    assert ".onnx output" in capsys.readouterr().err
