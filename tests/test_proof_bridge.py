"""Bridge: the expressions the SymPy proofs verify are the ones the torch library computes.

The proofs (``proofs/``) establish identities for symbolic formulas; these tests lambdify the very
same formulas (``proofs.expressions``, built by ``proofs._symbolic``: one source) and compare them
with the shipped torch code at random points in float64 (``atol = 1e-12``), for every shipped
radial profile, the whole forward pass with psi and o, and the degeneration update. A wrong
forward (psi added without its gain) and a wrong activation (a non-isotropic length) are shown
to be caught. The profiles' receipt constants are compared with the proven ones
(``proofs.profiles.CONSTANTS``).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy as sp
import torch
from conftest import make_model
from isoproof.proofs import profiles
from isoproof.proofs.expressions import (
    activation_expression,
    degeneration_update,
    forward_expression,
)
from scipy.optimize import minimize_scalar

import isoproof as ip
from isoproof.testing import default_atol

ATOL = default_atol(torch.float64)  # 1e-12
RADIALS = ("tanh", "softsign", "log1p", "shifted_relu")


def _activation_mismatch(act: ip.IsotropicActivation, n: int, radial: str, seed: int) -> float:
    z, o, f = activation_expression(n, radial)
    fn = sp.lambdify([*z, o], list(f), modules="numpy")
    rng = np.random.default_rng(seed)
    pts = rng.normal(size=(50, n)) * rng.choice([0.1, 1.0, 10.0], size=(50, 1))
    o_value = float(act.o)
    expected = np.array([fn(*row, o_value) for row in pts], dtype=np.float64)
    got = act(torch.from_numpy(pts)).detach().numpy()
    return float(np.abs(got - expected).max())


@pytest.mark.parametrize("radial", RADIALS)
@pytest.mark.parametrize("n", [1, 3, 6])
def test_activation_matches_the_proven_expression(radial: str, n: int) -> None:
    for o_value in (0.0, 1e-6, 0.37, 4.0):
        act = ip.IsotropicActivation(
            radial, intrinsic_length="constant", init_length=o_value, dtype=torch.float64
        )
        assert _activation_mismatch(act, n, radial, seed=n) <= ATOL


def test_a_non_isotropic_activation_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """Changing the torch length (one coordinate only) makes the bridge fail."""
    act = ip.IsotropicActivation(
        "tanh", intrinsic_length="constant", init_length=0.37, dtype=torch.float64
    )
    monkeypatch.setattr(
        act, "norm", lambda z: torch.sqrt(act.o + z[..., :1] ** 2).expand(*z.shape[:-1], 1)
    )
    assert _activation_mismatch(act, 3, "tanh", seed=3) > 1e-3


def _forward_mismatch(model: ip.IsotropicMLP, radial: str, seed: int) -> float:
    widths = tuple(model.widths)
    psi = model.psi_mode != "none"
    x, net, y = forward_expression(widths, radial, psi)
    values: dict[sp.Symbol, float] = {}
    for l, lin in enumerate(model.linears):
        for sym, val in zip(net.weights[l], lin.weight.detach().reshape(-1).tolist(), strict=True):
            values[sym] = val
        for sym, val in zip(net.biases[l], lin.bias.detach().tolist(), strict=True):
            values[sym] = val
        if l >= 1 and psi:
            for sym, val in zip(net.psis[l], model.psi[l - 1].detach().tolist(), strict=True):
                values[sym] = val
    for l, act in enumerate(model.activations):
        values[net.lengths[l]] = float(act.o)
    fn = sp.lambdify([*x, *values], list(y), modules="numpy", cse=True)
    rng = np.random.default_rng(seed)
    pts = rng.normal(size=(20, widths[0])) * 2
    expected = np.array([fn(*row, *values.values()) for row in pts], dtype=np.float64)
    with torch.no_grad():
        got = model(torch.from_numpy(pts)).numpy()
    return float(np.abs(got - expected).max())


@pytest.mark.parametrize("radial", RADIALS)
def test_forward_pass_with_psi_matches_the_proven_expression(radial: str) -> None:
    model = make_model([3, 4, 3, 2], seed=5, radial=radial)
    model.eval()
    assert _forward_mismatch(model, radial, seed=7) <= ATOL


def test_forward_adding_psi_without_the_gain_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    model = make_model([3, 4, 3, 2], seed=5)
    model.eval()

    def run_without_gain(x: torch.Tensor, states=None) -> torch.Tensor:
        z = model.linears[0](x)
        for i in range(1, len(model.linears)):
            a, _ = model.activations[i - 1].forward_with_gain(z)
            z = model.linears[i](a) + model.psi[i - 1]  # the bug: psi without g
        return z

    monkeypatch.setattr(model, "_run", run_without_gain)
    assert _forward_mismatch(model, "tanh", seed=7) > 1e-3


@pytest.mark.parametrize(("layer", "k"), [(0, 1), (1, 2), (2, 3)])
def test_degeneration_update_matches_the_proven_expression(layer, k):
    model = make_model([10, 9, 8, 7, 4], seed=11)  # no layer wider than its input: no ties
    ip.left_diagonalise(model, layer)  # now the weakest neurons are the last rows
    with torch.no_grad():  # distinct singular values, so the SVD inside prune keeps the order
        W = model.linears[layer].weight
        W.mul_(torch.linspace(2.0, 1.0, W.shape[0], dtype=W.dtype)[:, None])
    ip.left_diagonalise(model, layer)
    b_star = model.linears[layer].bias[-k:].detach().numpy().copy()
    W_star = model.linears[layer + 1].weight[:, -k:].detach().numpy().copy()
    psi = model.psi[layer].detach().numpy().copy()
    o = float(model.activations[layer].o.detach())

    symbols, o_new, psi_new = degeneration_update(k, W_star.shape[0])
    args = [symbols["o"], *symbols["b_star"], *symbols["W_star"], *symbols["psi"]]
    values = [o, *b_star, *W_star.reshape(-1), *psi]
    o_expected = float(sp.lambdify(args, o_new, modules="numpy")(*values))
    psi_expected = np.array(sp.lambdify(args, list(psi_new), modules="numpy")(*values), float)

    ip.prune(model, layer, n=k)
    assert float(model.activations[layer].o.detach()) == pytest.approx(o_expected, rel=1e-12)
    np.testing.assert_allclose(model.psi[layer].detach().numpy(), psi_expected, rtol=0, atol=1e-12)


def _tanh_gain_slope_sup() -> float:
    """``sup_r |g'(r)|`` for ``g = tanh(r) / r``, maximised numerically (not proven)."""
    r = sp.Symbol("r", positive=True)
    slope = sp.lambdify(r, -sp.diff(sp.tanh(r) / r, r), modules="numpy")
    best = minimize_scalar(lambda t: -slope(t), bounds=(0.1, 5.0), method="bounded")
    return float(-best.fun)


@pytest.mark.parametrize("radial", RADIALS)
def test_receipt_constants_are_sound(radial: str) -> None:
    """The library's constants are at least the proven suprema (sound) and within 1% of them.

    For tanh's ``gain_lipschitz`` the proven value is an upper bound (2 sqrt(3) / 9); the
    supremum itself (about 0.3434) is maximised numerically here.
    """
    library = ip.get_radial(radial)
    shift = library.shift or 1.0
    proven = {
        name: float(value.subs(sp.Symbol("R", positive=True), shift))
        for name, value in profiles.CONSTANTS[radial].items()
    }
    supremum = dict(proven)
    if radial == "tanh":
        supremum["gain_lipschitz"] = _tanh_gain_slope_sup()
        assert supremum["gain_lipschitz"] <= proven["gain_lipschitz"]
    for name in ("bound", "lipschitz", "gain_lipschitz", "gain_bound"):
        value = getattr(library, name)
        if math.isinf(proven[name]):
            assert math.isinf(value), (radial, name, value)
            continue
        assert supremum[name] * (1 - 1e-12) <= value <= 1.011 * proven[name], (
            radial,
            name,
            value,
            supremum[name],
            proven[name],
        )
