"""IsotropicActivation: equivariance, numerics at the edges, modes and errors."""

from __future__ import annotations

import math

import pytest
import torch

from isoproof import IsoproofError, IsotropicActivation, export_mode
from isoproof.radial import RADIALS
from isoproof.testing import assert_equivariant, random_orthogonal

RADIAL_SPECS = ["tanh", "softsign", "log1p", "shifted_relu:0.5"]


@pytest.mark.parametrize("radial", RADIAL_SPECS)
@pytest.mark.parametrize("mode", ["trainable", "constant", "none"])
def test_equivariant_rotations_and_reflections(radial, mode, dtype):
    act = IsotropicActivation(radial, intrinsic_length=mode, init_length=0.2, dtype=dtype)
    x = 2 * torch.randn(64, 7, dtype=dtype, generator=torch.Generator().manual_seed(3))
    err = assert_equivariant(act, x, trials=6, reflections=True)
    assert err <= (1e-12 if dtype == torch.float64 else 1e-5)


def test_matches_the_formula_exactly():
    act = IsotropicActivation(
        "tanh", intrinsic_length="constant", init_length=0.3, dtype=torch.float64
    )
    z = torch.randn(20, 5, dtype=torch.float64)
    N = torch.sqrt(0.3 + (z * z).sum(-1, keepdim=True))
    torch.testing.assert_close(act(z), torch.tanh(N) / N * z, rtol=0, atol=1e-15)
    torch.testing.assert_close(act.gain(z), torch.tanh(N) / N, rtol=0, atol=1e-15)
    assert act.gain(z).shape == (20, 1)


def test_intrinsic_length_storage():
    t = IsotropicActivation(intrinsic_length="trainable", init_length=1e-6)
    assert isinstance(t.log_o, torch.nn.Parameter)
    assert t.o.dim() == 0 and math.isclose(float(t.o.detach()), 1e-6, rel_tol=1e-5)
    assert math.isclose(float(t.log_o.detach()), math.log(1e-6), rel_tol=1e-6)
    c = IsotropicActivation(intrinsic_length="constant", init_length=0.5)
    assert not list(c.parameters()) and float(c.o) == 0.5
    n = IsotropicActivation(intrinsic_length="none")
    assert float(n.o) == 0.0 and not list(n.parameters())
    with pytest.raises(IsoproofError, match="expected o = 0"):
        n.set_o(1.0)
    with pytest.raises(IsoproofError, match="init_length > 0"):
        IsotropicActivation(intrinsic_length="trainable", init_length=0.0)


def test_unknown_radial_lists_the_valid_names():
    with pytest.raises(ValueError, match="tanh, softsign, log1p, shifted_relu") as info:
        IsotropicActivation("relu")
    assert "relu" in str(info.value)
    assert set(RADIALS) == {"tanh", "softsign", "log1p", "shifted_relu"}
    with pytest.raises(ValueError, match="shift R > 0"):
        IsotropicActivation("shifted_relu:-1")


@pytest.mark.parametrize(
    ("dtype", "big"),
    [(torch.float64, 1e300), (torch.float32, 3e38), (torch.float16, 6e4), (torch.bfloat16, 3e38)],
)
@pytest.mark.parametrize("radial", RADIAL_SPECS)
def test_finite_value_and_gradient_at_the_edges(dtype, big, radial):
    act = IsotropicActivation(radial, intrinsic_length="trainable", init_length=1e-6, dtype=dtype)
    rows = torch.tensor(
        [[0.0, 0.0, 0.0], [1e-30, 0.0, -1e-30], [big, -big, big], [big, 0.0, 0.0], [1.0, 2.0, 3.0]],
        dtype=torch.float64,
    ).to(dtype)
    z = rows.clone().requires_grad_(True)
    y = act(z)
    assert torch.isfinite(y).all(), y
    weights = torch.randn(y.shape, dtype=torch.float64)
    (y.double() * weights).sum().backward()
    assert torch.isfinite(z.grad).all(), z.grad
    assert torch.isfinite(act.log_o.grad).all()
    if radial == "tanh":  # |f(z)| = tanh(N) -> 1 for huge norms: direction kept, not collapsed
        assert abs(float(y[3, 0].detach()) - 1.0) < 1e-2
        assert float(y[2].detach().double().norm()) == pytest.approx(1.0, abs=1e-2)


def test_gradient_at_zero_is_the_linearisation():
    act = IsotropicActivation("tanh", intrinsic_length="none", eps=1e-3, dtype=torch.float64)
    z = torch.zeros(1, 4, dtype=torch.float64, requires_grad=True)
    jac = torch.autograd.functional.jacobian(act, z).reshape(4, 4)
    g_eps = math.tanh(1e-3) / 1e-3
    torch.testing.assert_close(jac, g_eps * torch.eye(4, dtype=torch.float64))


def test_conv_features_norm_over_channels():
    act = IsotropicActivation(
        "tanh", intrinsic_length="constant", init_length=0.1, dim=1, dtype=torch.float64
    )
    x = torch.randn(2, 6, 5, 4, dtype=torch.float64)
    Q = random_orthogonal(6, reflection=True)
    rotated = torch.einsum("ij,bjhw->bihw", Q, x)
    torch.testing.assert_close(act(rotated), torch.einsum("ij,bjhw->bihw", Q, act(x)))
    assert act.gain(x).shape == (2, 1, 5, 4)
    per_pixel = IsotropicActivation(
        "tanh", intrinsic_length="constant", init_length=0.1, dtype=torch.float64
    )
    flat = x.permute(0, 2, 3, 1)
    torch.testing.assert_close(act(x), per_pixel(flat).permute(0, 3, 1, 2))


def test_export_mode_uses_the_plain_norm_with_the_same_values():
    act = IsotropicActivation("tanh", intrinsic_length="trainable", init_length=0.2)
    z = 3 * torch.randn(50, 9)
    y = act(z)
    with export_mode(act):
        assert act.plain
        torch.testing.assert_close(act(z), y, rtol=1e-6, atol=1e-6)
    assert not act.plain


def test_not_equivariant_elementwise_counterexample_is_detected():
    with pytest.raises(AssertionError, match="not O"):
        assert_equivariant(torch.tanh, torch.randn(8, 5, dtype=torch.float64))
