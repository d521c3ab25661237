"""The public assertions fail on counter-examples, so their passes mean something."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import batch, make_model

from isoproof.testing import (
    assert_equivariant,
    assert_function_preserved,
    default_atol,
    random_orthogonal,
)


@pytest.mark.parametrize("reflection", [False, True])
def test_random_orthogonal(reflection):
    q = random_orthogonal(6, reflection=reflection, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(q.T @ q, torch.eye(6, dtype=torch.float64), atol=1e-13, rtol=0)
    assert float(torch.linalg.det(q)) == pytest.approx(-1.0 if reflection else 1.0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_elementwise_tanh_is_caught(dtype):
    with pytest.raises(AssertionError, match="not O\\(5\\)-equivariant"):
        assert_equivariant(torch.tanh, torch.randn(16, 5, dtype=dtype))


def test_reflection_only_counterexample_is_caught():
    def cross2d(x: torch.Tensor) -> torch.Tensor:  # 90-degree rotation commutes with SO(2) only
        return torch.stack([-x[..., 1], x[..., 0]], dim=-1)

    x = torch.randn(8, 2, dtype=torch.float64)
    assert_equivariant(cross2d, x, reflections=False)
    with pytest.raises(AssertionError, match="reflection"):
        assert_equivariant(cross2d, x, reflections=True)


def test_function_preserved_catches_a_perturbed_copy():
    model = make_model([4, 6, 3])
    x = batch(4)
    assert assert_function_preserved(model, copy.deepcopy(model), x) == 0.0
    perturbed = copy.deepcopy(model)
    with torch.no_grad():
        perturbed.linears[1].weight[0, 0] += 1e-6
    with pytest.raises(AssertionError, match="function changed"):
        assert_function_preserved(model, perturbed, x)


def test_default_tolerances_are_dtype_aware():
    assert default_atol(torch.float64) < default_atol(torch.float32) < default_atol(torch.float16)


def test_one_tolerance_table() -> None:
    """The tests, the ONNX verifier and isoproof.testing read one table (float32: 1e-5)."""
    from conftest import TOL
    from isoproof.exporters.verify import TOLERANCES

    from isoproof.testing import default_atol

    assert {torch.float64: 1e-12, torch.float32: 1e-5} == TOL
    for kind in ("float32", "float16"):
        assert TOLERANCES[kind] == default_atol(getattr(torch, kind))
    assert TOLERANCES["float64"] == default_atol(torch.float64, across_runtimes=True) == 1e-10
