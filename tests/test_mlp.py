"""IsotropicMLP: forward against an independent NumPy reference, modes, penalty, errors."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from conftest import batch, make_model

import isoproof as ip


def numpy_forward(model: ip.IsotropicMLP, x: np.ndarray) -> np.ndarray:
    """The note's recursion written again from scratch in NumPy (tanh profile, o, psi)."""
    Ws = [lin.weight.detach().double().numpy() for lin in model.linears]
    bs = [lin.bias.detach().double().numpy() for lin in model.linears]
    psis = [p.detach().double().numpy() for p in model.psi]
    os_ = [float(a.o.detach()) for a in model.activations]
    use_psi = model.psi_mode != "none"
    eps = model.eps
    z = x @ Ws[0].T + bs[0]
    for l in range(1, len(Ws)):
        N = np.sqrt(np.maximum(os_[l - 1] + (z * z).sum(-1, keepdims=True), eps**2))
        g = np.tanh(N) / N
        z = (g * z) @ Ws[l].T + bs[l] + (psis[l - 1] * g if use_psi else 0.0)
    return z


@pytest.mark.parametrize("psi", ["decay", "trainable", "constant", "none"])
@pytest.mark.parametrize("o", ["trainable", "constant", "none"])
def test_forward_matches_numpy_reference(psi, o):
    model = make_model([5, 7, 6, 4, 3], psi=psi, intrinsic_length=o, seed=4)
    x = batch(5, 40)
    ref = numpy_forward(model, x.numpy())
    np.testing.assert_allclose(model(x).detach().numpy(), ref, rtol=0, atol=1e-13)


def test_psi_is_added_scaled_by_the_previous_gain():
    model = make_model([3, 4, 2], seed=1)
    x = batch(3, 5)
    (g,) = model.gains(x)
    with torch.no_grad():
        delta = torch.tensor([0.7, -0.2], dtype=torch.float64)
        y0 = model(x)
        model.psi[0].add_(delta)
        torch.testing.assert_close(model(x) - y0, g * delta, rtol=0, atol=1e-14)


def test_plain_mlp_is_the_member_with_o_and_psi_zero():
    model = ip.IsotropicMLP([4, 6, 3], intrinsic_length="none", psi="none", dtype=torch.float64)
    x = batch(4, 10)
    h = model.linears[0](x)
    n = h.norm(dim=-1, keepdim=True)
    torch.testing.assert_close(model(x), model.linears[1](torch.tanh(n) / n * h))


def test_attributes_and_counts():
    model = ip.IsotropicMLP([10, 8, 8, 8, 2])
    assert model.widths == [10, 8, 8, 8, 2]
    assert len(model.linears) == 4 and len(model.activations) == 3 and len(model.psi) == 3
    assert [p.numel() for p in model.psi] == [8, 8, 2]
    # weights + biases + psi + o
    expected = 10 * 8 + 8 * 8 * 2 + 8 * 2 + (8 * 3 + 2) + (8 + 8 + 2) + 3
    assert model.count_parameters() == expected
    assert model.count_parameters(hidden_only=True) == 2 * 64
    for lin in model.linears:  # orthogonal init, zero biases
        w = lin.weight.detach().double()
        eye = torch.eye(min(w.shape), dtype=torch.float64)
        gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
        torch.testing.assert_close(gram, eye, atol=1e-5, rtol=0)
        assert torch.all(lin.bias == 0)
    assert all(torch.all(p == 0) for p in model.psi)


def test_penalty_only_in_decay_mode():
    model = make_model([3, 4, 4, 2], psi="decay")
    expected = 0.1 * sum(float((p.detach() ** 2).sum()) for p in model.psi)
    assert float(model.penalty().detach()) == pytest.approx(expected, rel=1e-12)
    assert float(make_model([3, 4, 4, 2], psi="trainable").penalty()) == 0.0
    assert float(make_model([3, 4, 4, 2], psi="none").penalty()) == 0.0


def test_gain_tracking_for_expectation_mode():
    model = make_model([3, 5, 2], psi="none")
    assert torch.isnan(model.gain_means).all()
    x = batch(3, 16)
    model.train()
    model(x)
    torch.testing.assert_close(model.gain_means, torch.stack([g.mean() for g in model.gains(x)]))
    model.record_gains(2 * x)
    torch.testing.assert_close(model.gain_means[0], model.gains(2 * x)[0].mean())


@pytest.mark.parametrize(
    ("widths", "match"),
    [([3], "at least 2"), ([3, 0, 2], "int >= 1"), ([3, 2.5, 2], "int >= 1"), ("ab", "ints")],
)
def test_bad_widths(widths, match):
    with pytest.raises(ip.WidthError, match=match):
        ip.IsotropicMLP(widths)


def test_bad_modes_and_inputs():
    with pytest.raises(ip.IsoproofError, match="psi in"):
        ip.IsotropicMLP([2, 3, 1], psi="sometimes")
    with pytest.raises(ip.IsoproofError, match="intrinsic_length in"):
        ip.IsotropicMLP([2, 3, 1], intrinsic_length="long")
    with pytest.raises(ip.IsoproofError, match="init in"):
        ip.IsotropicMLP([2, 3, 1], init="xavier")
    model = ip.IsotropicMLP([2, 3, 1])
    with pytest.raises(ip.WidthError, match="expected input with last dimension 2, got shape"):
        model(torch.zeros(4, 3))


def test_float32_model_close_to_float64_copy():
    m64 = make_model([6, 9, 9, 3], seed=7)
    m32 = copy.deepcopy(m64).float()
    assert m32.dtype == torch.float32
    x = batch(6, 20)
    torch.testing.assert_close(m32(x.float()).double(), m64(x), atol=1e-5, rtol=0)


def test_receipt_to_dict_round_trips_through_strict_json() -> None:
    import json
    import math

    from isoproof.strict_json import dumps

    r = ip.Receipt("prune", (1, 2), (4, 6, 3), (4, 5, 3), 60, 50, (0.5, 0.25), math.inf, None)
    d = r.to_dict()
    assert d["widths_after"] == [4, 5, 3] and d["layer"] == [1, 2]
    assert d["exact"] is False and d["param_ratio"] == 50 / 60
    back = json.loads(dumps(d))
    assert back["bound"] == "inf" and back["singular_values"] == [0.5, 0.25]
