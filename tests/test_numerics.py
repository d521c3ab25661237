"""Numerics and dtypes (issue 16, items 12-13): half-precision construction, and finite outputs
and gradients up to float64's largest value."""

from __future__ import annotations

import math

import pytest
import torch

import isoproof as ip

F64 = torch.float64


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_models_initialise_orthogonally(dtype):
    model = ip.IsotropicMLP([4, 6, 6, 3], dtype=dtype)
    w = model.linears[1].weight.to(F64)
    assert model.dtype == dtype
    assert torch.allclose(w @ w.T, torch.eye(6, dtype=F64), atol=2e-2)  # orthogonal to dtype eps
    assert bool(torch.isfinite(model(torch.randn(5, 4, dtype=dtype))).all())


@pytest.mark.parametrize("radial", ["tanh", "softsign", "log1p", "shifted_relu"])
@pytest.mark.parametrize("length", ["trainable", "none"])
@pytest.mark.parametrize(
    "row", [[1.7e308, 1.7e308], [-1.7e308, 1e308, 1e308, 1e308], [1.79e308, 0.0, 1.0]]
)
def test_outputs_and_gradients_finite_near_float64_max(radial, length, row):
    act = ip.IsotropicActivation(radial, intrinsic_length=length, dtype=F64)
    z = torch.tensor([row, [1.0] + [0.0] * (len(row) - 1)], dtype=F64, requires_grad=True)
    y = act(z)
    y.sum().backward()
    assert bool(torch.isfinite(y).all()) and bool(torch.isfinite(z.grad).all())


@pytest.mark.parametrize("radial", ["tanh", "softsign", "log1p", "shifted_relu"])
def test_overflow_safe_path_matches_the_maths(radial):
    """At |z| = sqrt(2) * 1e301 (N still representable): f(z) = g(N) z, and the Jacobian is
    g I + (s'(N) - g) u u^T (u = z/|z|, o = 0), to a few ulps."""
    act = ip.IsotropicActivation(radial, intrinsic_length="none", dtype=F64)
    z = torch.tensor([[1e301, -1e301]], dtype=F64, requires_grad=True)
    n = 1e301 * (z.detach() / 1e301).norm()  # representable here
    assert float(n) == pytest.approx(math.sqrt(2) * 1e301)
    g = act.radial.gain(n)
    ds = {"tanh": 0.0, "softsign": 1 / (1 + n) ** 2, "log1p": 1 / (1 + n), "shifted_relu": 1.0}
    u = z.detach()[0] / n
    jac = g * torch.eye(2, dtype=F64) + (ds[radial] - g) * torch.outer(u, u)
    got = act(z)
    assert torch.allclose(got.detach(), g * z.detach(), rtol=1e-14, atol=0)
    for i in range(2):
        (row,) = torch.autograd.grad(got[0, i], z, retain_graph=True)
        assert torch.allclose(row[0], jac[i], rtol=1e-12, atol=1e-12 * float(jac.abs().max()))
