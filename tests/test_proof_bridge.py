"""Bridge: the expressions the SymPy proofs verify are the ones the torch library computes.

The proofs (``proofs/``) establish identities for symbolic formulas; these tests lambdify the very
same formulas (``proofs.expressions``) and compare them with the shipped torch code at random
points in float64, so a change to either side that breaks the correspondence fails here.
"""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
import torch
from conftest import make_model
from isoproof.proofs.expressions import activation_expression, degeneration_update

import isoproof as ip


@pytest.mark.parametrize("n", [1, 3, 6])
def test_activation_matches_the_proven_expression(n):
    z, o, f = activation_expression(n)
    fn = sp.lambdify([*z, o], list(f), modules="numpy")
    rng = np.random.default_rng(n)
    for o_value in (0.0, 1e-6, 0.37, 4.0):
        act = ip.IsotropicActivation(
            "tanh", intrinsic_length="constant", init_length=o_value, dtype=torch.float64
        )
        pts = rng.normal(size=(50, n)) * rng.choice([0.1, 1.0, 10.0], size=(50, 1))
        expected = np.array([fn(*row, o_value) for row in pts], dtype=np.float64)
        got = act(torch.from_numpy(pts)).numpy()
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


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
