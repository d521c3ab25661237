"""ONNX export and verification (GitHub issue 5): every resize survives export, exactly.

Each model (dense, grown, pruned, sparsified, task-resized, an NGC model with a shared ``P``, and a
plain module sharing one Parameter) is exported once per module (dynamo export takes seconds) and
verified with onnxruntime and the ONNX reference evaluator against torch, on random, adversarial
and batch-1/batch-7 inputs. The verifier itself must fail on a corrupted weight and on a
disallowed op.
"""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from conftest import batch, make_model
from isoproof.exporters import (
    FORBIDDEN_OPS,
    OP_ALLOWLIST,
    ExportError,
    VerificationError,
    export_onnx,
    read_onnx_metadata,
    verify_onnx,
)
from isoproof.exporters.graph import ops_used
from onnx import numpy_helper
from torch import nn

import isoproof as ip
from isoproof.app.cli import main
from isoproof.io import model_digest

WIDTHS = [6, 12, 10, 12, 3]
DEEP = [6, 12, 12, 10, 12, 3]  # interior maps 12->12, 12->10, 10->12: sparsify makes 1 and 3
SETS = {"random", "zeros", "tiny", "large", "batch1", "batch7"}


class SharedStates(nn.Module):
    """Two layers reading one shared ``P`` (NGC-style ``(x P) B_k^T + b_k``), no ``nn.Linear``."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.P = nn.Parameter(torch.randn(8, 3, generator=g))
        self.B1 = nn.Parameter(torch.randn(8, 3, generator=g))
        self.B2 = nn.Parameter(torch.randn(4, 3, generator=g))
        self.b = nn.Parameter(torch.randn(4, generator=g))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(F.linear(x @ self.P, self.B1))
        return F.linear(h @ self.P, self.B2, self.b)


def _variants() -> dict[str, nn.Module]:
    base = make_model(WIDTHS, dtype=torch.float32, seed=7)
    grown, pruned, tasks = (copy.deepcopy(base) for _ in range(3))
    ip.grow(grown, 1, n=3, generator=torch.Generator().manual_seed(0))
    ip.prune(pruned, 0, n=2)
    ip.prune(pruned, 2, n=1)
    sparse = make_model(DEEP, dtype=torch.float32, seed=7)
    ip.sparsify(sparse)
    ip.add_inputs(tasks, 2)
    ip.add_outputs(tasks, 1)
    return {"dense": base, "grown": grown, "pruned": pruned, "sparsified": sparse, "tasks": tasks}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """name -> (model, path): every model exported once for the whole module."""
    folder = tmp_path_factory.mktemp("onnx")
    out = {}
    for name, model in _variants().items():
        out[name] = (model, export_onnx(model, folder / f"{name}.onnx"))
    return out


@pytest.mark.parametrize("name", ["dense", "grown", "pruned", "sparsified", "tasks"])
def test_export_matches_torch(exported, name):
    model, path = exported[name]
    report = verify_onnx(path, model)
    assert report.ok, report.table()
    assert report.max_abs <= 1e-5  # the float32 parity target, outputs of order 1
    assert {r.name for r in report.results} == SETS
    assert {r.evaluator for r in report.results} == {"onnxruntime", "reference"}
    assert all(r.nonfinite == 0 for r in report.results)
    assert report.kind == "float32" and report.batch == "dynamic" and report.opset == 18
    assert report.source_digest_match is True
    # lean and portable: only allow-listed ops, none of the forbidden ones
    assert set(report.ops) <= OP_ALLOWLIST and not set(report.ops) & FORBIDDEN_OPS
    assert report.disallowed_ops == []
    # one self-contained file; metadata describes the source
    assert sorted(p.name for p in path.parent.iterdir() if p.name.startswith(name)) == [path.name]
    meta = read_onnx_metadata(path)
    assert json.loads(meta["isoproof.widths"]) == model.widths
    assert meta["isoproof.source_sha256"] == model_digest(model)
    assert int(meta["isoproof.parameters"]) == ip.count_parameters(model)
    assert meta["isoproof.version"] == ip.__version__
    assert meta["isoproof.opset"] == "18" and meta["isoproof.batch"] == "dynamic"
    assert "torch" in meta["isoproof.producer"]
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    assert [i.name for i in proto.graph.input] == ["input"]
    assert [o.name for o in proto.graph.output] == ["logits"]
    assert not any(n.metadata_props for n in proto.graph.node)  # no stack traces / local paths


def test_resized_models_have_resized_graphs(exported):
    for name in ("grown", "pruned", "tasks"):
        model, path = exported[name]
        proto = onnx.load(str(path))
        dims = proto.graph.input[0].type.tensor_type.shape.dim
        assert dims[1].dim_value == model.widths[0]
        shapes = {tuple(t.dims) for t in proto.graph.initializer}
        for lin in model.linears:
            assert tuple(lin.weight.shape) in shapes  # each map stored at its new size
    assert exported["grown"][0].widths == [6, 12, 13, 12, 3]
    assert exported["pruned"][0].widths == [6, 10, 10, 11, 3]
    assert exported["tasks"][0].widths == [8, 12, 10, 12, 4]


def test_diagonal_layers_export_as_elementwise_mul(exported):
    model, path = exported["sparsified"]
    assert model.diagonal_layers == [1, 3]
    proto = onnx.load(str(path))
    ops = ops_used(proto)
    dense = [i for i, lin in enumerate(model.linears) if i not in model.diagonal_layers]
    assert ops["Gemm"] == len(dense)  # dense maps only: no Gemm full of zeros
    assert ops.get("MatMul", 0) == len(model.activations)  # the (z*z) @ ones of each norm
    inits = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    for node in proto.graph.node:
        if node.op_type == "MatMul":
            ones = inits[node.input[1]]
            assert ones.shape[1] == 1 and np.all(ones == 1)
    matrices = sorted(a.shape for a in inits.values() if a.ndim == 2 and a.shape[1] > 1)
    assert matrices == sorted(tuple(model.linears[i].weight.shape) for i in dense)
    for i in model.diagonal_layers:  # stored as their min(in, out) diagonal entries
        diag = inits[f"linears.{i}.diagonal"]
        np.testing.assert_array_equal(diag, model.linears[i].diagonal.detach().numpy())
    assert "Pad" in ops and "Slice" not in ops  # the 10->12 diagonal map pads its output


def test_corrupted_weight_is_caught(exported, tmp_path):
    model, path = exported["dense"]
    proto = onnx.load(str(path))
    target = next(t for t in proto.graph.initializer if t.name == "linears.3.weight")
    w = numpy_helper.to_array(target).copy()
    w[0, 0] += 1e-3  # one output weight off by 1e-3 (hidden weights are damped by saturation)
    target.CopyFrom(numpy_helper.from_array(w, target.name))
    bad = tmp_path / "corrupted.onnx"
    onnx.save(proto, str(bad))
    with pytest.raises(VerificationError, match="max abs error") as info:
        verify_onnx(bad, model)
    report = info.value.report
    assert not report.ok and 1e-5 < report.max_abs < 1e-3
    assert verify_onnx(bad, model, raise_on_failure=False).ok is False
    # NaN in a weight is reported as NaN, not as a tolerance breach
    w[0, 0] = math.nan
    target.CopyFrom(numpy_helper.from_array(w, target.name))
    onnx.save(proto, str(bad))
    report = verify_onnx(bad, model, raise_on_failure=False)
    assert any("NaN/Inf" in f for f in report.failures)
    assert sum(r.nonfinite for r in report.results) > 0


def test_other_model_and_disallowed_op_fail(exported):
    model, path = exported["dense"]
    other = make_model(WIDTHS, dtype=torch.float32, seed=8)
    report = verify_onnx(path, other, raise_on_failure=False)
    assert not report.ok and report.source_digest_match is False
    report = verify_onnx(path, model, allow=OP_ALLOWLIST - {"Tanh"}, raise_on_failure=False)
    assert report.disallowed_ops == ["Tanh"]
    assert any("allow-list" in f for f in report.failures)


def test_real_data_accuracy_and_report(exported):
    model, path = exported["dense"]
    x = batch(6, 40, dtype=torch.float32, seed=5)
    y = model(x).argmax(1)
    report = verify_onnx(path, model, inputs=x, labels=y, evaluators=["onnxruntime"])
    assert report.accuracy == {"torch": 1.0, "onnxruntime": 1.0}
    assert report.accuracy_change == {"onnxruntime": 0.0}
    data = report.to_dict()
    assert data["ok"] is True and data["results"][1]["name"] == "data"
    text = report.table()
    assert "verification: PASS" in text and "batch7" in text and "+0.00 pp" in text
    with pytest.raises(VerificationError, match="labels of shape"):
        verify_onnx(path, model, inputs=x, labels=y[:-1])
    with pytest.raises(VerificationError, match="evaluators"):
        verify_onnx(path, model, evaluators=["tensorrt"])


def test_shared_parameter_is_stored_once(tmp_path):
    model = SharedStates()
    with pytest.raises(ExportError, match="input_width"):
        export_onnx(model, tmp_path / "x.onnx")
    path = export_onnx(model, tmp_path / "shared.onnx", input_width=8)
    stored = [numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer]
    P = model.P.detach().numpy()
    assert sum(a.shape == P.shape and np.array_equal(a, P) for a in stored) == 1
    assert read_onnx_metadata(path)["isoproof.widths"] == "n/a"
    # elementwise tanh is not normalised: float32 rounding of inputs of norm 1e4 (the "large"
    # set) costs about 3e-5 wherever a unit is not saturated
    report = verify_onnx(path, model, atol=1e-4)
    assert report.ok and report.max_abs <= 1e-4


def test_ngc_model_stores_shared_states_once(tmp_path):
    from isoproof.ngc import ngc_compress

    model = make_model([8, 24, 24, 24, 4], dtype=torch.float32, seed=2)
    small, _ = ngc_compress(model, keep=0.5, calibration=batch(8, 256, dtype=torch.float32))
    P = small.linears[1].P
    assert P is small.linears[2].P
    path = export_onnx(small, tmp_path / "ngc.onnx")
    proto = onnx.load(str(path))
    stored = [numpy_helper.to_array(t) for t in proto.graph.initializer]
    states = P.detach().numpy()  # [24, r], the same shape as each member's B_k
    assert sum(a.shape == states.shape and np.array_equal(a, states) for a in stored) == 1
    assert sum(a.size for a in stored) < sum(a.size for a in _dense_weights(model))
    assert verify_onnx(path, small).ok


def _dense_weights(model: ip.IsotropicMLP) -> list[np.ndarray]:
    return [lin.weight.detach().numpy() for lin in model.linears]


def test_export_validates_arguments(tmp_path):
    model = make_model([4, 5, 3], dtype=torch.float32)
    for kwargs, match in [
        ({"opset": 10}, "opset"),
        ({"batch": 0}, "batch"),
        ({"batch": "fixed"}, "batch"),
        ({"dtype": "float16"}, "dtype"),
        ({"input_width": 5}, "input_width"),
    ]:
        with pytest.raises(ExportError, match=match):
            export_onnx(model, tmp_path / "m.onnx", **kwargs)
    with pytest.raises(ExportError, match=r"nn\.Module"):
        export_onnx("model", tmp_path / "m.onnx")  # type: ignore[arg-type]
    with pytest.raises(VerificationError, match="no such file"):
        verify_onnx(tmp_path / "missing.onnx", model)
    assert not (tmp_path / "m.onnx").exists()


def test_cli_export_and_verify(exported, tmp_path, capsys):
    model = copy.deepcopy(exported["dense"][0])
    ip.sparsify(model)  # map 1 becomes a 12->10 diagonal: exported with a Slice
    ckpt = ip.save(model, tmp_path / "m.safetensors")
    out = tmp_path / "m.onnx"
    np.save(tmp_path / "x.npy", batch(6, 50, dtype=torch.float32, seed=9).numpy())
    argv = ["export", str(ckpt), "-o", str(out), "--batch", "1", "--fp16", "--int8", "--verify"]
    assert main([*argv, "--data", str(tmp_path / "x.npy")]) == 0
    text = capsys.readouterr().out
    assert text.count("verification: PASS") == 3
    assert "quantised / excluded nodes" in text  # the int8 report
    assert "Slice" in ops_used(onnx.load(str(out)))
    assert text.count("data       50") == 6  # the real rows, 2 evaluators x 3 files
    for suffix in (".onnx", ".fp16.onnx", ".int8.onnx"):
        path = out.with_suffix(suffix)
        dims = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
        assert dims[0].dim_value == 1  # --batch 1: a fixed batch
    report_json = tmp_path / "report.json"
    assert main(["verify", str(out), str(ckpt), "--json", str(report_json)]) == 0
    data = json.loads(report_json.read_text())
    assert data["ok"] is True and data["batch"] == "1" and data["kind"] == "float32"
    assert "verification: PASS" in capsys.readouterr().out
    # a file from another model fails (exit 1) and says why
    other = ip.save(make_model(model.widths, dtype=torch.float32, seed=1), tmp_path / "o.st")
    assert main(["verify", str(out), str(other)]) == 1
    assert "verification: FAIL" in capsys.readouterr().out
    # user errors: one line, exit 2
    assert main(["export", str(ckpt), "-o", str(tmp_path / "m.txt")]) == 2
    assert "expected an output path ending in .onnx" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["export", str(ckpt), "-o", str(out), "--batch", "0"])
    assert info.value.code == 2


def test_metadata_parameter_count_is_the_stored_count() -> None:
    """One definition of the stored count: psi and o stored as buffers count too (issue 11)."""
    from isoproof.exporters.export import _set_metadata

    model = ip.IsotropicMLP([4, 6, 6, 3], psi="constant", intrinsic_length="constant")
    proto = onnx.ModelProto()
    _set_metadata(proto, model, opset=18, batch="dynamic", dtype="float32")
    meta = read_onnx_metadata(proto)
    # 78 weights + 15 biases + 9 psi + 2 o; nn.Parameters alone would be 93
    assert int(meta["isoproof.parameters"]) == ip.count_parameters(model) == 104


def test_registry_reuse_is_scoped_to_the_export_call(exported) -> None:
    """The exporter's registry speed-up patches nothing outside the call and hands out copies."""
    from isoproof.exporters import export as module
    from torch.onnx._internal.exporter import _registration

    original = _registration.ONNXRegistry.__dict__["from_torchlib"]
    with module._reuse_torchlib_registry():
        patched = _registration.ONNXRegistry.__dict__["from_torchlib"]
        first = _registration.ONNXRegistry.from_torchlib()
        first.functions.clear()  # a caller mutating its registry (custom_translation_table)
        second = _registration.ONNXRegistry.from_torchlib()
    assert patched is not original
    assert _registration.ONNXRegistry.__dict__["from_torchlib"] is original  # restored
    assert second is not first and len(second.functions) > 100  # the cache was not touched
    assert len(module._REGISTRIES) <= module._REGISTRY_CACHE_SIZE
