"""The activation's fast path and the export's dropped zero terms change no value.

* ``IsotropicActivation.norm`` takes one ``vector_norm`` + ``hypot`` almost always and falls back
  to the overflow-safe :meth:`robust_norm` only when ``|z|`` is not finite in the accumulator;
  both must agree, and the fallback must really be taken near overflow.
* Inside ``export_mode`` an ``o`` of exactly 0 and an all-zero psi vector get no graph node;
  a non-zero one must still be there (else outputs would change).
"""

from __future__ import annotations

import math

import pytest
import torch

import isoproof as ip
from isoproof.activations import IsotropicActivation
from isoproof.testing import default_atol

MODES = ["trainable", "constant", "none"]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("mode", MODES)
def test_fast_norm_equals_robust_norm(dtype: torch.dtype, mode: str) -> None:
    act = IsotropicActivation("tanh", intrinsic_length=mode, init_length=0.3, dtype=dtype)
    g = torch.Generator().manual_seed(0)
    for scale in (1e-30, 1e-4, 1.0, 1e3, 1e15):
        z = torch.randn(32, 7, dtype=dtype, generator=g) * scale
        fast, robust = act.norm(z), act.robust_norm(z)
        rel = float(((fast.double() - robust.double()) / robust.double()).abs().max())
        assert rel <= 4 * torch.finfo(dtype).eps, (scale, rel)


def test_fallback_is_taken_near_overflow(monkeypatch: pytest.MonkeyPatch) -> None:
    act = IsotropicActivation("tanh", intrinsic_length="constant", init_length=0.5)
    z = torch.full((3, 4), 1e30, dtype=torch.float32)  # |z|^2 overflows float32
    calls: list[int] = []
    original = IsotropicActivation.robust_norm
    monkeypatch.setattr(
        IsotropicActivation, "robust_norm", lambda self, t: calls.append(1) or original(self, t)
    )
    n = act.norm(z)
    assert calls == [1]
    assert torch.allclose(n.double(), torch.full((3, 1), 2e30, dtype=torch.float64), rtol=1e-6)
    act.norm(torch.ones(3, 4))  # an ordinary input stays on the fast path
    assert calls == [1]


@pytest.mark.parametrize("mode", MODES)
def test_fast_path_gradient_matches_robust(mode: str) -> None:
    act = IsotropicActivation("softsign", intrinsic_length=mode, init_length=0.2)
    act = act.double()
    z = torch.randn(8, 5, dtype=torch.float64, requires_grad=True)
    (act.norm(z) ** 3).sum().backward()
    fast = z.grad.clone()
    z.grad = None
    (act.robust_norm(z) ** 3).sum().backward()
    assert torch.allclose(fast, z.grad, atol=default_atol(torch.float64))


def _nodes(model: torch.nn.Module, tmp_path, name: str) -> list[str]:
    import onnx
    from isoproof.exporters import export_onnx

    path = export_onnx(model, tmp_path / f"{name}.onnx")
    return [n.op_type for n in onnx.load(str(path)).graph.node]


def test_export_drops_exactly_zero_psi_and_o(tmp_path) -> None:
    torch.manual_seed(0)
    zero = ip.IsotropicMLP([6, 8, 8, 3], intrinsic_length="constant", init_length=0.0)
    busy = ip.IsotropicMLP([6, 8, 8, 3], intrinsic_length="constant", init_length=0.25)
    busy.load_state_dict(zero.state_dict())
    for act in busy.activations:
        act.set_o(0.25)
    with torch.no_grad():
        busy.psi[0].normal_()
        busy.psi[1].normal_()
    lean, full = _nodes(zero, tmp_path, "zero"), _nodes(busy, tmp_path, "busy")
    # two activations lose the o Add, two psi terms lose their Mul and Add
    assert len(full) - len(lean) == 2 + 2 * 2, (lean, full)
    x = torch.randn(5, 6)
    with ip.export_mode(busy), torch.no_grad():
        plain = busy(x)
    with torch.no_grad():
        assert torch.allclose(plain, busy(x), atol=default_atol(torch.float32))
    assert busy._export_psi is None and not busy.activations[0].plain  # restored on exit


def test_forward_skips_module_dispatch_but_honours_hooks() -> None:
    """The MLP forward calls ``F.linear`` directly on plain ``nn.Linear`` maps; a hook on a map,
    a global hook or a pre-hook that changes the input must still act on every call."""
    torch.manual_seed(0)
    model = ip.IsotropicMLP([5, 7, 7, 3])
    with torch.no_grad():
        for p in model.psi:
            p.normal_()
    x = torch.randn(4, 5)
    with torch.no_grad():
        reference = model(x)
        _, (a1, g1) = model.hidden_states(x)
        last = model.linears[2]
        want = torch.addcmul((2 * a1) @ last.weight.T + last.bias, model.psi[1], g1)
    seen: list[str] = []
    handles = [
        model.linears[1].register_forward_hook(lambda m, i, o: seen.append("map")),
        last.register_forward_pre_hook(lambda m, i: (2 * i[0],)),
        torch.nn.modules.module.register_module_forward_hook(lambda m, i, o: seen.append("any")),
    ]
    try:
        with torch.no_grad():
            doubled = model(x)
    finally:
        for h in handles:
            h.remove()
    assert seen.count("map") == 1 and seen.count("any") == 3 + 1  # three maps and the model
    torch.testing.assert_close(doubled, want)
    assert not torch.allclose(doubled, reference)
    with torch.no_grad():
        assert torch.equal(model(x), reference)  # hooks removed: the direct path, same values


def test_forward_applies_a_pruning_reparametrisation() -> None:
    from torch.nn.utils import prune

    torch.manual_seed(0)
    model = ip.IsotropicMLP([5, 7, 7, 3])
    masked = ip.IsotropicMLP([5, 7, 7, 3])
    masked.load_state_dict(model.state_dict())
    prune.l1_unstructured(model.linears[1], "weight", amount=0.5)  # weight_orig + a pre-hook
    with torch.no_grad():
        masked.linears[1].weight.mul_(model.linears[1].weight_mask)
        x = torch.randn(4, 5)
        torch.testing.assert_close(model(x), masked(x))


@pytest.mark.parametrize("radial", ["tanh", "softsign", "log1p", "shifted_relu:0.5"])
@pytest.mark.parametrize("mode", MODES)
def test_in_place_no_grad_forward_equals_the_graph_forward(radial: str, mode: str) -> None:
    """Without a graph the norm and the gain are computed in place on fresh tensors: the values
    must equal the differentiable path's bit for bit, and nothing the caller holds may change."""
    act = IsotropicActivation(radial, intrinsic_length=mode, init_length=0.3)
    z = torch.randn(16, 9, generator=torch.Generator().manual_seed(3))
    kept = z.clone()
    with torch.no_grad():
        a0, g0 = act.forward_with_gain(z)
    a1, g1 = act.forward_with_gain(z.clone().requires_grad_(True))
    assert torch.equal(a0, a1.detach()) and torch.equal(g0, g1.detach())
    assert torch.equal(z, kept)
    from isoproof.radial import Radial

    r = torch.tensor([2.0, 3.0])
    identity = Radial("tanh", lambda t: t)  # a profile returning its input: no in-place division
    assert torch.equal(identity.gain(r), torch.ones(2)) and torch.equal(r, torch.tensor([2.0, 3.0]))


@pytest.mark.parametrize("mode", ["trainable", "constant"])
def test_reused_sqrt_o_follows_every_change_of_o(mode: str) -> None:
    """Without a graph ``sqrt(o)`` is reused while ``o`` keeps its value: a new value by set_o,
    a write through ``.data`` (no version bump) and a dtype change must all be seen."""
    act = IsotropicActivation("tanh", intrinsic_length=mode, init_length=0.25)
    z = torch.zeros(2, 3)  # N = sqrt(o) exactly (|z| = 0)

    def norm() -> float:
        with torch.no_grad():
            return float(act.norm(z)[0, 0])

    assert norm() == pytest.approx(0.5)
    act.set_o(0.36)
    assert norm() == pytest.approx(0.6)
    stored = act.log_o if mode == "trainable" else act.o_const
    stored.data.fill_(math.log(0.49) if mode == "trainable" else 0.49)  # version not bumped
    assert norm() == pytest.approx(0.7)
    act.double()
    with torch.no_grad():
        assert act.norm(z.double()).dtype == torch.float64
        root = float(act.norm(z.double())[0, 0])
    assert root == pytest.approx(math.sqrt(float(act.o)), rel=1e-15)  # o in float64 now
