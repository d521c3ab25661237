"""The tanh CNN twin of an isotropic CNN: same geometry, identical initial weights."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from isoproof import IsotropicConvNet
from isoproof.data import Dataset
from isoproof.exceptions import IsoproofError, NotIsotropicError
from isoproof.standard import paired_standard, widths_of
from isoproof.train import fit

LAYERS = [
    {"conv": 5, "k": 3, "padding": 1, "pool": 2},
    {"conv": 4, "k": 3, "stride": 2, "dilation": 1},
    {"dense": 6},
]


def _net(**kw):
    g = torch.Generator().manual_seed(0)
    return IsotropicConvNet([2, 9, 8], LAYERS, 3, dtype=torch.float64, generator=g, **kw)


def _reference_tanh_cnn(iso: IsotropicConvNet, x: torch.Tensor) -> torch.Tensor:
    """The tanh CNN written out with functional ops from the isotropic model's own parameters."""
    import torch.nn.functional as F

    h = x
    for conv, g in zip(iso.convs, iso.geometry, strict=True):
        h = torch.tanh(
            F.conv2d(h, conv.weight, conv.bias, stride=g["stride"], padding=g["padding"])
        )
        if g["pool"] > 1:
            h = F.avg_pool2d(h, g["pool"])
    h = h.flatten(1)
    for j, lin in enumerate(iso.linears):
        h = lin(torch.tanh(h) if j else h)
    return h


def test_paired_cnn_copies_weights_and_geometry():
    iso = _net()
    twin = paired_standard(iso)
    x = torch.randn(4, 2, 9, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(twin(x), _reference_tanh_cnn(iso, x), atol=1e-12, rtol=0)
    assert widths_of(twin) == iso.widths == [2, 5, 4, 6, 3]
    assert sum(p.numel() for p in twin.parameters()) == sum(
        m.weight.numel() + m.bias.numel() for m in iso.maps
    )
    assert twin[0].weight.dtype == torch.float64
    # the weights are copies: training the twin leaves the isotropic model alone
    before = iso.convs[0].weight.detach().clone()
    with torch.no_grad():
        twin[0].weight.add_(1.0)
    assert torch.equal(iso.convs[0].weight, before)
    # and the two are different functions (elementwise vs channel-wise activation)
    assert float((twin(x) - iso(x)).abs().max()) > 1e-3


def test_paired_cnn_1d_and_activation_choice():
    iso = IsotropicConvNet([1, 40], [{"conv": 3, "k": 5, "stride": 2}, {"conv": 2, "k": 3}], 4)
    relu = paired_standard(iso, "relu")
    assert isinstance(relu[0], nn.Conv1d) and isinstance(relu[1], nn.ReLU)
    x = torch.randn(3, 1, 40)
    z = torch.relu(iso.convs[0](x))
    z = torch.relu(iso.convs[1](z)).flatten(1)
    torch.testing.assert_close(relu(x), iso.linears[0](z), atol=1e-6, rtol=0)
    with pytest.raises(IsoproofError, match="expected activation in"):
        paired_standard(iso, "swish")


def test_paired_cnn_refuses_nonzero_psi():
    iso = _net()
    with torch.no_grad():
        iso.psi[0].fill_(0.5)
    with pytest.raises(IsoproofError, match=r"psi = 0 .* got max \|psi\| = 0.5"):
        paired_standard(iso)
    assert isinstance(paired_standard(iso, strict=False), nn.Sequential)
    with pytest.raises(NotIsotropicError):
        paired_standard(nn.Linear(2, 2))  # type: ignore[arg-type]


def test_fit_accepts_conv_samples_for_both_twins():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 1, 6, 6, generator=g)
    y = (x.mean((1, 2, 3)) > 0).long()
    data = Dataset("toy", x, y, x[:10], y[:10], torch.zeros(36), torch.ones(36))
    iso = IsotropicConvNet([1, 6, 6], [{"conv": 3, "padding": 1}], 2, generator=g)
    twin = paired_standard(iso)
    for model in (iso, twin):
        h = fit(model, data, epochs=2, batch_size=8, seed=0, verbose=False)
        assert h.epoch == [0, 1, 2] and h.train_loss[-1] < h.train_loss[0]
    wrong = IsotropicConvNet([2, 6, 6], [{"conv": 3, "padding": 1}], 2)
    with pytest.raises(
        IsoproofError,
        match=r"mapping 36 features to 2 classes for toy \(samples of shape \[1, 6, 6\]\)",
    ):
        fit(wrong, data, epochs=1, verbose=False)
