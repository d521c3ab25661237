"""ONNX export of isotropic conv nets: a pruned, sparsified CNN survives export to 1e-5.

Two files are exported per module (dynamo export takes seconds): a pruned and sparsified 2-D net
(with non-zero psi kernels, a psi matrix at the flatten, a ``DiagonalConv``) with a fixed batch of
4 (what NNAPI / CoreML need), and a pruned 1-D net with a dynamic batch. Both are verified with
onnxruntime and the ONNX reference evaluator on random, zero, tiny and huge inputs; the verifier
must fail on a model that differs, and the mobile report must accept the channel norm.
"""

from __future__ import annotations

import copy

import numpy as np
import onnx
import pytest
import torch
from isoproof.exporters import (
    ExportError,
    VerificationError,
    export_onnx,
    mobile_usability,
    quantize_int8,
    read_onnx_metadata,
    to_float16,
    verify_onnx,
)
from isoproof.exporters.graph import norm_subgraphs, ops_used

import isoproof as ip

SETS = {"random", "zeros", "tiny", "large"}
LAYERS_2D = [
    {"conv": 6, "k": 3, "padding": 1, "pool": 2},
    {"conv": 6, "k": 1},
    {"conv": 5, "k": 3, "stride": 2, "padding": 1},
    {"dense": 7},
]


def _pruned_2d() -> ip.IsotropicConvNet:
    g = torch.Generator().manual_seed(0)
    net = ip.IsotropicConvNet(
        [1, 8, 8], LAYERS_2D, 4, intrinsic_length="constant", init_length=0.3, generator=g
    )
    with torch.no_grad():  # non-zero biases: removed channels leave a constant b* to carry
        for m in net.maps:
            m.bias.normal_(0.0, 0.5, generator=g)
    x = torch.randn(16, 1, 8, 8, generator=g)
    ip.prune(net, 0, 2, probe=x)  # channels removed: psi kernels of layer 1 become non-zero
    ip.prune(net, 2, 1, probe=x)  # the last conv layer: the psi matrix at the flatten
    ip.sparsify(net)  # the 1x1 conv 4 -> 6 becomes a DiagonalConv
    return net


def _pruned_1d() -> ip.IsotropicConvNet:
    g = torch.Generator().manual_seed(1)
    net = ip.IsotropicConvNet(
        [1, 40], [{"conv": 6, "k": 5, "stride": 2, "pool": 2}, {"conv": 4, "k": 3}], 10, generator=g
    )
    ip.prune(net, 0, 2)
    return net


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("conv-onnx")
    net2, net1 = _pruned_2d(), _pruned_1d()
    assert net2.widths == [1, 4, 6, 4, 7, 4] and net2.diagonal_layers == [1]
    assert max(float(p.detach().abs().max()) for p in net2.psi) > 1e-3  # psi really used
    return {
        "2d": (net2, export_onnx(net2, folder / "cnn2d.onnx", batch=4)),
        "1d": (net1, export_onnx(net1, folder / "cnn1d.onnx")),
        "folder": folder,
    }


@pytest.mark.parametrize("which", ["2d", "1d"])
def test_pruned_conv_net_parity_in_both_evaluators(files, which):
    net, path = files[which]
    report = verify_onnx(path, net)
    assert report.ok and report.kind == "float32"
    seen = {(r.name, r.evaluator) for r in report.results}
    for name in SETS:
        for ev in ("onnxruntime", "reference"):
            assert (name, ev) in seen
    assert report.max_abs <= 1e-5
    large = [r for r in report.results if r.name == "large"]
    assert all(r.nonfinite == 0 for r in large)
    proto = onnx.load(str(path))
    ops = ops_used(proto)
    assert "Conv" in ops and "ReduceSum" not in ops and not report.disallowed_ops
    # one norm subgraph per activation, found structurally (float16/int8 keep them exact)
    assert len(norm_subgraphs(proto)) == len(net.activations)
    meta = read_onnx_metadata(path)
    assert meta["isoproof.widths"] == str(net.widths)
    assert (
        ip.IsotropicConvNet.from_config(__import__("json").loads(meta["isoproof.config"])).widths
        == net.widths
    )


def test_verifier_catches_a_different_conv_net(files):
    net, path = files["2d"]
    other = copy.deepcopy(net)
    with torch.no_grad():
        other.psi[0].mul_(1.01)  # a 1% error in one psi kernel
    with pytest.raises(VerificationError, match="exceeds"):
        verify_onnx(path, other, evaluators=("onnxruntime",))
    with pytest.raises(VerificationError, match=r"inputs of shape \[rows, 1, 8, 8\]"):
        verify_onnx(path, net, inputs=np.zeros((3, 64)))


def test_channel_norm_runs_on_mobile_providers(files):
    report = mobile_usability(files["2d"][1])
    assert not report.dynamic_inputs
    for ep in ("NNAPI", "CoreML NeuralNetwork"):
        support = report.by_ep[ep]
        assert support.unsupported_ops == [] and support.partitions == 1, report.table()
        assert support.suitability == "YES"
    # CoreML MLProgram lacks only Pad, which the rectangular DiagonalConv (4 -> 6 channels) uses;
    # the convolutions, the ones-kernel channel norms and the pooling all run there
    assert report.by_ep["CoreML MLProgram"].unsupported_ops == ["ai.onnx:Pad"], report.table()


def test_conv_net_float16_and_int8(files):
    net, path = files["2d"]
    folder = files["folder"]
    f16 = to_float16(path, folder / "cnn2d-f16.onnx")
    assert verify_onnx(f16, net).kind == "float16"
    x = torch.randn(96, 1, 8, 8, generator=torch.Generator().manual_seed(5))
    y = net(x).argmax(1)
    int8 = quantize_int8(path, folder / "cnn2d-int8.onnx", labelled=(x, y))
    ops = ops_used(onnx.load(int8.path))
    assert ops.get("ConvInteger", 0) >= 2  # the conv kernels are quantised ...
    assert ops.get("Conv", 0) == 3  # ... the three ones-kernel channel norms are not
    report = verify_onnx(int8.path, net, inputs=x, labels=y)
    assert report.kind == "int8" and report.ok


def test_export_checks_the_input_shape(files, tmp_path):
    net, _ = files["1d"]
    with pytest.raises(ExportError, match=r"expected input_shape=\[1, 40\]"):
        export_onnx(net, tmp_path / "x.onnx", input_shape=[1, 41])
    with pytest.raises(ExportError, match="list of ints"):
        export_onnx(torch.nn.Conv1d(1, 2, 3), tmp_path / "x.onnx", input_shape=[1, -2])
