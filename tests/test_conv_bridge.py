"""Bridge: the conv formulas proven in ``proofs/convolution.py`` are the ones the torch code runs.

The forward pass of the proofs (:func:`conv_forward`: 1-D convolution with zero padding, the
channel-wise activation per position, the psi kernel on the gain row) is lambdified and compared
with :class:`isoproof.IsotropicConvNet` at random points; the removal update the proof uses
(``o + b*^2``, ``phi_t + V_t[:, c*] b*``) is compared with what :func:`isoproof.prune` writes.
"""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
import torch
from isoproof.proofs._symbolic import matrix, tanh_profile, vector
from isoproof.proofs.convolution import ConvLayer, conv_forward
from isoproof.proofs.expressions import degenerated_length, degenerated_psi

import isoproof as ip

F64 = torch.float64


def _net(seed: int, channels: int = 3) -> ip.IsotropicConvNet:
    g = torch.Generator().manual_seed(seed)
    net = ip.IsotropicConvNet(
        [2, 3],
        [{"conv": channels, "k": 2, "padding": 1}, {"conv": 2, "k": 2, "padding": 1}],
        2,
        psi="trainable",
        intrinsic_length="constant",
        dtype=F64,
        generator=g,
        init="kaiming",
    )
    with torch.no_grad():
        for p in net.psi:
            p.normal_(generator=g)
        for m in net.maps:
            m.bias.normal_(generator=g)
        for i, act in enumerate(net.activations):
            act.set_o(0.2 + 0.3 * i)
    return net


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_conv_forward_matches_the_proven_expression(seed):
    net = _net(seed)
    o0, o1 = sp.symbols("o0 o1", positive=True)
    layers = (
        ConvLayer(tuple(matrix(f"K{t}_", 3, 2) for t in range(2)), vector("b", 3), None, o0),
        ConvLayer(
            tuple(matrix(f"V{t}_", 2, 3) for t in range(2)),
            vector("c", 2),
            tuple(vector(f"phi{t}_", 2) for t in range(2)),
            o1,
        ),
    )
    x = matrix("a", 2, 3)
    _, a, gains = conv_forward(x, layers, None, tanh_profile)
    args = [*x, o0, o1, *layers[0].bias, *layers[1].bias]
    for layer in layers:
        args += [s for k in layer.taps for s in k]
    args += [s for p in layers[1].psi or () for s in p]
    fn = sp.lambdify(args, [list(a), list(gains)], modules="numpy")
    k0, k1 = net.convs[0].weight.detach(), net.convs[1].weight.detach()
    params = [float(net.activations[0].o), float(net.activations[1].o)]
    params += net.convs[0].bias.tolist() + net.convs[1].bias.tolist()
    params += [float(v) for t in range(2) for v in k0[:, :, t].reshape(-1)]
    params += [float(v) for t in range(2) for v in k1[:, :, t].reshape(-1)]
    params += [float(v) for t in range(2) for v in net.psi[0][:, 0, t]]
    rng = np.random.default_rng(seed)
    xs = torch.from_numpy(rng.normal(size=(8, 2, 3)) * rng.choice([0.1, 1.0, 5.0], (8, 1, 1)))
    u, v = net.hidden_states(xs)[1]
    for i in range(xs.shape[0]):
        a_val, g_val = fn(*xs[i].reshape(-1).tolist(), *params)
        np.testing.assert_allclose(u[i].numpy().reshape(-1), np.array(a_val, float), atol=1e-12)
        np.testing.assert_allclose(v[i].numpy().reshape(-1), np.array(g_val, float), atol=1e-12)


@pytest.mark.parametrize("seed", [0, 3])
def test_channel_removal_update_matches_the_proven_expression(seed):
    net = _net(seed)
    ip.left_diagonalise(net, 0)
    with torch.no_grad():  # distinct singular values: prune's own SVD keeps this order
        net.convs[0].weight.mul_(torch.tensor([3.0, 2.0, 1.0], dtype=F64).reshape(3, 1, 1))
    ip.left_diagonalise(net, 0)
    b_star = float(net.convs[0].bias[-1])
    w_star = net.convs[1].weight[:, -1, :].detach().clone()  # [C_out, taps]
    phi = net.psi[0][:, 0, :].detach().clone()
    o = float(net.activations[0].o)

    o_sym, b_sym = sp.Symbol("o", positive=True), sp.Symbol("b_star", real=True)
    phi_sym, w_sym = vector("phi", 2), vector("W_star", 2)
    new_o = sp.lambdify([o_sym, b_sym], degenerated_length(o_sym, sp.Matrix([b_sym])))
    new_phi = sp.lambdify(
        [*phi_sym, *w_sym, b_sym], list(degenerated_psi(phi_sym, w_sym, sp.Matrix([b_sym])))
    )
    ip.prune(net, 0, 1)
    assert float(net.activations[0].o) == pytest.approx(new_o(o, b_star), rel=1e-12)
    for t in range(2):
        expected = np.array(new_phi(*phi[:, t].tolist(), *w_star[:, t].tolist(), b_star), float)
        np.testing.assert_allclose(net.psi[0][:, 0, t].detach().numpy(), expected, atol=1e-12)
