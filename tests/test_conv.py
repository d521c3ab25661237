"""Isotropic convolutional networks: every structural operation on channel spaces.

Small float64 nets with every parameter non-trivial (biases, psi kernels, psi matrix, o), in 1-D
and 2-D, with stride, padding, dilation, average pooling, a 1x1 layer and the conv -> dense
transition. Maths: ``docs/method.md`` §1-§5 (convolutions); proofs: ``proofs/convolution.py``.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import assert_unchanged, snapshot

import isoproof as ip
from isoproof.ops._bounds import operator_norm
from isoproof.ops._surgery import Surgery
from isoproof.ops.neurodegeneration import remove_weakest
from isoproof.testing import assert_equivariant, random_orthogonal

F64 = torch.float64
NETS = {
    "2d": ([2, 9, 9], [
        {"conv": 5, "k": 3, "padding": 1, "pool": 2},
        {"conv": 6, "k": 3, "stride": 2, "padding": 1},
        {"conv": 6, "k": 1},
        {"dense": 5},
    ]),
    "1d": ([2, 17], [
        {"conv": 5, "k": 3, "padding": 2, "dilation": 2},
        {"conv": 6, "k": 4, "stride": 2, "padding": 1, "pool": 2},
        {"dense": 5},
    ]),
    "2d-transition-is-output": ([1, 6, 6], [
        {"conv": 4, "k": 3, "padding": 1, "pool": 2},
        {"conv": 5, "k": 2},
    ]),
}  # fmt: skip


def make_conv(name: str = "2d", *, seed: int = 0, psi: str = "trainable", scale: float = 0.5):
    shape, layers = NETS[name]
    g = torch.Generator().manual_seed(seed)
    net = ip.IsotropicConvNet(shape, layers, 3, psi=psi, dtype=F64, generator=g)
    with torch.no_grad():
        for m in net.maps:
            m.bias.copy_(scale * torch.randn(m.bias.shape, generator=g, dtype=F64))
        if psi != "none":
            for p in net.psi:
                p.copy_(scale * torch.randn(p.shape, generator=g, dtype=F64))
        for act in net.activations:
            act.set_o(0.05 + float(torch.rand((), generator=g)))
    return net


def inputs(net, rows: int = 16, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(rows, *net.input_shape, generator=g, dtype=F64)


def hidden_spaces(net) -> range:
    return range(net.num_layers - 1)


def weaken(net, h: int, sigma: float, *, seed: int = 3) -> None:
    """Give the last channel/neuron of space ``h`` an incoming map of norm ``sigma`` (0: dead)
    and no own psi term, so that pruning it is exact at ``sigma = 0``."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        w = net.maps[h].weight
        d = torch.randn(w[-1].shape, generator=g, dtype=F64)
        w[-1] = sigma * d / d.norm()
        if h >= 1:
            net.psi[h - 1][-1] = 0.0


# ----------------------------------------------------------------------- the activation
def test_channelwise_activation_is_equivariant_and_the_tester_catches_a_counterexample():
    act = ip.IsotropicActivation("tanh", intrinsic_length="constant", init_length=0.2, dim=1)
    x = torch.randn(3, 5, 4, 4, dtype=F64)
    assert assert_equivariant(act, x, dim=1) < 1e-12
    with pytest.raises(AssertionError, match="not O\\(5\\)-equivariant"):
        assert_equivariant(torch.tanh, x, dim=1)
    with pytest.raises(AssertionError):  # max pooling per channel depends on the basis
        assert_equivariant(lambda t: F.max_pool2d(act(t), 2), x, dim=1)
    assert assert_equivariant(lambda t: F.avg_pool2d(act(t), 2), x, dim=1) < 1e-12


def test_spec_validation_and_max_pooling_refused():
    with pytest.raises(ip.NotEquivariantError, match="max pooling"):
        ip.IsotropicConvNet([1, 8, 8], [{"conv": 4, "pool": 2, "pool_mode": "max"}], 3)
    with pytest.raises(ip.NotEquivariantError, match="groups=1"):
        ip.IsotropicConvNet([2, 8, 8], [{"conv": 4, "groups": 2}], 3)
    with pytest.raises(ip.WidthError, match="non-empty output"):
        ip.IsotropicConvNet([1, 4, 4], [{"conv": 4, "k": 5}], 3)
    with pytest.raises(ip.IsoproofError, match="conv layers before dense"):
        ip.IsotropicConvNet([1, 8, 8], [{"dense": 4}, {"conv": 4}], 3)
    with pytest.raises(ip.IsoproofError, match="'stride' to be an int >= 1"):
        ip.IsotropicConvNet([1, 8, 8], [{"conv": 4, "stride": 0}], 3)
    net = make_conv()
    with pytest.raises(ip.WidthError, match="expected input of shape"):
        net(torch.randn(2, 3, 9, 9, dtype=F64))
    x = inputs(net, 4)
    torch.testing.assert_close(net(x.flatten(1)), net(x), rtol=0, atol=0)  # flat rows


def test_psi_kernel_and_psi_matrix_enter_the_forward_pass():
    net = make_conv()
    x = inputs(net)
    y = net(x)
    for i in range(len(net.psi)):
        other = copy.deepcopy(net)
        with torch.no_grad():
            other.psi[i].mul_(2.0)
        assert float((other(x) - y).abs().max()) > 1e-3, i


# ----------------------------------------------------------------------- exact operations
@pytest.mark.parametrize("name", list(NETS))
def test_rotation_left_diagonalisation_and_growth_are_exact(name):
    net = make_conv(name)
    x = inputs(net)
    y = net(x)
    for h in hidden_spaces(net):
        q = random_orthogonal(net.widths[h + 1], reflection=h % 2 == 1)
        assert ip.rotate(net, h, q, probe=x).max_abs_change <= 1e-12
        r = ip.left_diagonalise(net, h, probe=x)
        assert r.max_abs_change <= 1e-12
        s = r.singular_values
        assert list(s) == sorted(s, reverse=True) and len(s) == net.widths[h + 1]
        r = ip.grow(net, h, 2, probe=x, generator=torch.Generator().manual_seed(h))
        assert r.max_abs_change <= 1e-12 and r.bound == 0.0
    assert float((net(x) - y).abs().max()) <= 1e-12
    assert net.widths[1:-1] == [w + 2 for w in ip.IsotropicConvNet(*NETS[name], 3).widths[1:-1]]


@pytest.mark.parametrize("name", list(NETS))
def test_pruning_at_sigma_zero_is_exact_at_every_space(name):
    """Includes the last conv layer (its psi goes into the psi matrix of the transition) and
    the first dense layer (reading the flattened field)."""
    net = make_conv(name)
    x = inputs(net)
    for h in hidden_spaces(net):
        weaken(net, h, 0.0)
        y = net(x)
        o_before = float(net.activations[h].o)
        r = ip.prune(net, h, 1, probe=x)
        assert r.max_abs_change <= 1e-12 and r.bound <= 1e-12, (h, r)
        assert float(net.activations[h].o) > o_before  # o += b*^2
        assert float((net(x) - y).abs().max()) <= 1e-12


@pytest.mark.parametrize("name", ["2d", "1d"])
def test_prune_dead_gathers_psi_kernels_and_is_exact(name):
    """Three dead channels per space whose own psi kernels (psi-matrix rows) are parallel: one
    carrier keeps their common direction, two go (all three in space 0, which has no psi)."""
    net = make_conv(name)
    x = inputs(net)
    g = torch.Generator().manual_seed(5)
    for h in hidden_spaces(net):
        with torch.no_grad():
            net.maps[h].weight[-3:] = 0.0
            if h >= 1:
                p = net.psi[h - 1]
                row = torch.randn(p[0].shape, generator=g, dtype=F64)
                scale = torch.randn(3, *[1] * row.dim(), generator=g, dtype=F64)
                p[-3:] = scale * row
    y = net(x)
    widths = net.widths
    r = ip.prune_dead(net, probe=x)
    assert r.max_abs_change <= 1e-12
    assert float((net(x) - y).abs().max()) <= 1e-12
    assert net.widths[1] == widths[1] - 3
    assert net.widths[2:-1] == [w - 2 for w in widths[2:-1]], (widths, net.widths)


def test_without_gathering_own_psi_kernels_removal_is_not_exact():
    net = make_conv("2d")
    x = inputs(net)
    with torch.no_grad():
        net.maps[1].weight[-2:] = 0.0  # two dead channels with random own psi kernels
    y = net(x).detach()
    s = Surgery(net)
    remove_weakest(s, 1, 2, gather_psi=False)
    s.commit("prune", 1)
    assert float((net(x) - y).abs().max()) > 1e-3


def test_sparsify_diagonalises_1x1_and_dense_maps_only():
    net = make_conv("2d")
    x = inputs(net)
    y = net(x)
    before = net.count_parameters()
    r = ip.sparsify(net, probe=x)
    assert r.max_abs_change <= 1e-12
    pointwise = [i for i in range(1, net.num_layers - 1) if math.prod(net.map_shape(i)[2:]) == 1]
    assert r.layer == (2,) and pointwise == [2], (r.layer, pointwise)  # 3x3 and 2x2-reading maps
    net1 = make_conv("1d")  # no pointwise interior map: nothing to do
    assert ip.sparsify(net1).layer == ()
    for i in r.layer:
        assert isinstance(net.maps[i], ip.DiagonalConv | ip.DiagonalLinear)
    assert net.count_parameters() < before
    assert float((net(x) - y).abs().max()) <= 1e-12


def test_full_diagonalisation_of_a_1x1_conv_is_a_per_channel_scale():
    net = make_conv("2d")
    x = inputs(net)
    y = net(x)
    r = ip.full_diagonalise(net, 2, probe=x)  # maps[2] is the 1x1 conv
    assert r.max_abs_change <= 1e-12
    assert isinstance(net.convs[2], ip.DiagonalConv)
    assert net.convs[2].diagonal.shape == (6,)
    torch.testing.assert_close(net(x), y, rtol=0, atol=1e-12)


def test_adapt_and_task_outputs_on_conv_nets():
    net = make_conv("2d")
    x = inputs(net)
    y = net(x)
    r = ip.adapt(net, buffer=2, threshold=0.5, probe=x)  # all sigma = 1: grows 2 everywhere
    assert r.max_abs_change <= 1e-12
    assert net.widths[1:-1] == [7, 8, 8, 7]
    assert ip.add_outputs(net, 2, probe=x).max_abs_change <= 1e-12 and net.widths[-1] == 5
    assert ip.remove_outputs(net, 2, probe=x).max_abs_change <= 1e-12
    torch.testing.assert_close(net(x), y, rtol=0, atol=1e-12)


# ----------------------------------------------------------------------- sigma > 0
@pytest.mark.parametrize(("name", "h"), [("2d", 0), ("2d", 1), ("2d", 2), ("1d", 1), ("1d", 2)])
def test_prune_error_is_linear_in_sigma_and_under_the_bound(name, h):
    changes = []
    for sigma in (1e-3, 1e-4, 1e-5):
        net = make_conv(name)
        x = inputs(net, 64)
        weaken(net, h, sigma)
        r = ip.prune(net, h, 1, probe=x)
        assert 0 < r.max_abs_change <= r.bound < math.inf, r
        changes.append(r.max_abs_change)
    ratios = [changes[i] / changes[i + 1] for i in range(2)]
    assert all(8 < q < 12.5 for q in ratios), ratios


@pytest.mark.parametrize(("k", "stride", "padding", "dilation"), [(3, 1, 1, 1), (3, 2, 2, 2)])
def test_conv_operator_norm_bound_is_guaranteed(k, stride, padding, dilation):
    """Against the true operator norm (power iteration with the adjoint), including the case
    where the kernel-matrix norm would under-estimate it (equal taps)."""
    g = torch.Generator().manual_seed(0)
    for kernel in (torch.randn(3, 2, k, k, generator=g, dtype=F64),
                   torch.randn(3, 2, 1, 1, dtype=F64, generator=g).expand(3, 2, k, k)):  # fmt: skip
        conv = lambda t, w=kernel: F.conv2d(t, w, stride=stride, padding=padding, dilation=dilation)  # noqa: E731
        x = torch.randn(1, 2, 12, 12, generator=g, dtype=F64)
        for _ in range(60):
            x = x.requires_grad_(True)
            y = conv(x)
            (adj,) = torch.autograd.grad(y, x, y)  # C^T C x
            x = (adj / adj.norm()).detach()
        true = float(conv(x).norm())
        bound = operator_norm(kernel, conv=True)
        assert true <= bound * (1 + 1e-9), (true, bound)
    kernel_matrix = float(torch.linalg.matrix_norm(kernel.reshape(3, -1), ord=2))
    assert kernel_matrix < 0.9 * true  # the naive bound would be wrong for equal taps


def test_receipt_bound_holds_against_a_brute_force_worst_case():
    """Maximise the output change of a sigma > 0 pruning over inputs of norm 1 (projected
    gradient ascent, several starts) on a tiny 1-D net: it never exceeds the receipt's bound."""
    g = torch.Generator().manual_seed(0)
    net = ip.IsotropicConvNet(
        [1, 6], [{"conv": 3, "k": 3, "padding": 1}, {"conv": 3, "k": 2, "stride": 2}], 2,
        dtype=F64, generator=g, psi="trainable",
    )  # fmt: skip
    with torch.no_grad():
        for m in net.maps:
            m.bias.normal_(generator=g)
        for p in net.psi:
            p.normal_(generator=g)
    weaken(net, 1, 0.3)
    before = copy.deepcopy(net)
    r = ip.prune(net, 1, 1, input_norm=1.0)

    def unit(t):
        return t / t.flatten(1).norm(dim=1).reshape(-1, 1, 1)

    x = unit(torch.randn(16, 1, 6, generator=torch.Generator().manual_seed(1), dtype=F64))
    for _ in range(40):  # 16 starts at once, each projected back to the unit sphere
        x.requires_grad_(True)
        gap = (net(x) - before(x)).norm(dim=1).sum()
        (grad,) = torch.autograd.grad(gap, x)
        x = unit((x + 0.5 * grad).detach())
    worst = float((net(x) - before(x)).abs().max())
    assert 1e-4 < worst <= r.bound, (worst, r.bound)


# ----------------------------------------------------------------------- negative controls
@pytest.mark.parametrize("flag", ["correct_o", "correct_psi"])
def test_negative_controls_leave_an_error_floor(flag):
    floors = []
    for sigma in (1e-4, 1e-8, 0.0):
        net = make_conv("2d")
        x = inputs(net)
        weaken(net, 1, sigma)
        y = net(x).detach()
        s = Surgery(net)
        _, bound = remove_weakest(s, 1, 1, **{flag: False})
        s.commit("prune", 1)
        assert bound == math.inf
        floors.append(float((net(x) - y).abs().max()))
    assert min(floors) > 1e-3, floors


# ----------------------------------------------------------------------- refusals
def test_refused_calls_leave_model_and_optimizer_bit_identical():
    net = make_conv("2d")
    x = inputs(net, 8)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    F.cross_entropy(net(x), torch.zeros(8, dtype=torch.long)).backward()
    opt.step()
    before, state = snapshot(net), copy.deepcopy(opt.state_dict())
    with pytest.raises(ip.NotDiagonalisableError, match="several spatial taps"):
        ip.full_diagonalise(net, 1, optimizer=opt)  # a 3x3 kernel
    with pytest.raises(ip.NotDiagonalisableError):
        ip.full_diagonalise(net, 3, optimizer=opt)  # the transition reads 2x2 positions
    with pytest.raises(ip.LayerIndexError):
        ip.prune(net, 4, optimizer=opt)
    with pytest.raises(ip.LayerIndexError):
        ip.grow(net, -1, optimizer=opt)
    with pytest.raises(ip.UnsupportedOptimizerError):
        ip.grow(net, 0, optimizer=torch.optim.RMSprop(net.parameters()))
    with pytest.raises(ip.NotIsotropicError, match="input channels"):
        ip.add_inputs(net, 1, optimizer=opt)
    with pytest.raises(ip.WidthError, match="at most"):
        ip.prune(net, 0, 5, optimizer=opt)
    assert_unchanged(net, before)
    after = opt.state_dict()
    assert after["param_groups"] == state["param_groups"]
    for k, v in state["state"].items():
        for name, t in v.items():
            assert torch.equal(after["state"][k][name], t), (k, name)


# ----------------------------------------------------------------------- optimiser state
def _step(net, opt, x, y):
    opt.zero_grad()
    (F.cross_entropy(net(x), y) + net.penalty()).backward()
    opt.step()


@pytest.mark.parametrize("h", [0, 1, 3])
def test_sgd_momentum_follows_a_channel_rotation_exactly(h):
    net = make_conv("2d", psi="decay")
    x = inputs(net, 16)
    y = torch.arange(16) % 3
    other = copy.deepcopy(net)
    q = random_orthogonal(net.widths[h + 1])
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    other_opt = torch.optim.SGD(other.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    _step(net, opt, x, y)
    _step(other, other_opt, x, y)
    ip.rotate(net, h, q, optimizer=opt)
    _step(net, opt, x, y)
    _step(other, other_opt, x, y)
    torch.testing.assert_close(net(x), other(x), rtol=0, atol=1e-10)
    third = copy.deepcopy(other)  # not trivially true: a rotation without the optimiser drifts
    third_opt = torch.optim.SGD(third.parameters(), lr=0.1, momentum=0.9)
    _step(third, third_opt, x, y)
    ip.rotate(third, h, q)
    _step(third, third_opt, x, y)
    assert float((third(x) - other(x)).abs().max()) > 1e-8


def test_adam_state_follows_prune_grow_and_sparsify():
    net = make_conv("2d")
    x = inputs(net, 16)
    y = torch.arange(16) % 3
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    _step(net, opt, x, y)
    ip.grow(net, 1, 2, optimizer=opt)
    grown = opt.state[net.convs[1].weight]["exp_avg"]
    assert grown.shape == net.convs[1].weight.shape
    assert torch.all(grown[-2:] == 0)  # new channels get zero moments
    ip.prune(net, 3, 1, optimizer=opt)
    ip.prune(net, 2, 1, optimizer=opt)  # the last conv layer: the transition's columns shrink
    ip.sparsify(net, optimizer=opt)
    params = {id(p) for grp in opt.param_groups for p in grp["params"]}
    assert params == {id(p) for p in net.parameters()}
    for p in net.parameters():
        for v in opt.state.get(p, {}).values():
            if isinstance(v, torch.Tensor) and v.dim() > 0:
                assert v.shape == p.shape
    _step(net, opt, x, y)  # the optimiser still steps
    assert torch.isfinite(net(x)).all()


# ----------------------------------------------------------------------- save / load / fit
def test_save_load_round_trip_is_bit_identical(tmp_path):
    net = make_conv("2d")
    x = inputs(net)
    weaken(net, 1, 0.0)
    ip.prune(net, 1)
    ip.sparsify(net)
    path = ip.save(net, tmp_path / "c.safetensors")
    back = ip.load(path)
    assert type(back) is ip.IsotropicConvNet and back.config() == net.config()
    assert back.diagonal_layers == net.diagonal_layers == [2]
    assert torch.equal(back(x), net(x))
    assert ip.io.read_metadata(path)["format"] == "isoproof.IsotropicConvNet/1"


def test_count_parameters_counts_kernels_psi_kernels_and_o():
    net = make_conv("1d")
    expect = sum(m.weight.numel() + m.bias.numel() for m in net.maps)
    expect += sum(p.numel() for p in net.psi) + len(net.activations)
    assert ip.count_parameters(net) == expect
    hidden = sum(m.weight.numel() for m in net.maps[1:-1])
    assert ip.count_parameters(net, hidden_only=True) == hidden


def test_fit_trains_a_conv_net_with_the_scaffold_buffer():
    data = ip.data.load_digits().subset(300, 200)
    net = ip.IsotropicConvNet(
        [1, 8, 8], [{"conv": 8, "k": 3, "padding": 1, "pool": 2}, {"conv": 8, "k": 3}], 10,
        generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    h = ip.fit(net, data, epochs=2, adapt=ip.AdaptSchedule(buffer=2, threshold=0.5), seed=0,
               verbose=False)  # fmt: skip
    assert h.widths[-1] == net.widths and h.widths[0] != h.widths[-1]
    assert h.test_accuracy[-1] > 0.3  # chance is 0.1
