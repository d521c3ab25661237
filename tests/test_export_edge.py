"""Edge variants (GitHub issue 5): float16, int8 (dynamic and static QDQ), ORT format, mobile.

A small isotropic MLP is trained on scikit-learn's digits inside the module (66 AdamW steps,
seeded, one thread: 98.5% test accuracy), exported once with a dynamic batch and once with
batch 1, and every variant is checked against torch with onnxruntime *and* the ONNX reference
evaluator, which really computes in float16 (onnxruntime's CPU provider upcasts some float16
kernels and hides overflow: the negative control below shows it).
"""

from __future__ import annotations

import copy
import math

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from isoproof.exporters import (
    ExportError,
    VerificationError,
    export_onnx,
    mobile_usability,
    quantize_int8,
    to_float16,
    to_ort_format,
    verify_onnx,
)
from isoproof.exporters.graph import norm_subgraphs, ops_used
from isoproof.exporters.runtime import ort_session
from isoproof.exporters.verify import (
    INT8_MAX_RELATIVE_ERROR,
    INT8_MIN_AGREEMENT,
    INT8_SCALE_FLOOR,
    INT8_UNBOUNDED_SETS,
    TOLERANCES,
    allowed_error,
    top1_agreement,
)
from onnx import numpy_helper

import isoproof as ip

WIDTHS = [64, 64, 64, 10]


def _train_digits(seed: int = 0):
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(seed).permutation(len(x))
    x = torch.tensor(x[order], dtype=torch.float32)
    y = torch.tensor(y[order])
    mean, std = x[:1400].mean(0), x[:1400].std(0).clamp_min(1.0)
    x = (x - mean) / std
    g = torch.Generator().manual_seed(seed)
    model = ip.IsotropicMLP(WIDTHS, generator=g)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: more threads only contend on a shared machine
    try:
        for _ in range(6):
            perm = torch.randperm(1400, generator=g)
            for i in range(0, 1400, 128):
                b = perm[i : i + 128]
                loss = F.cross_entropy(model(x[b]), y[b]) + model.penalty()
                opt.zero_grad()
                loss.backward()
                opt.step()
    finally:
        torch.set_num_threads(threads)
    return model.eval(), (x[:1400], y[:1400]), (x[1400:], y[1400:])


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    folder = tmp_path_factory.mktemp("edge")
    model, train, test = _train_digits()
    accuracy = float((model(test[0]).argmax(1) == test[1]).float().mean())
    assert accuracy > 0.95  # a real classifier, so accuracy changes mean something
    mobile = copy.deepcopy(model)
    ip.sparsify(mobile)  # map 1 becomes a 64x64 diagonal: Mul + Add
    return {
        "model": model,
        "train": train,
        "test": test,
        "folder": folder,
        "path": export_onnx(model, folder / "digits.onnx"),
        "mobile_model": mobile,
        "mobile_path": export_onnx(mobile, folder / "digits_b1.onnx", batch=1),
    }


def _rescaled(x: torch.Tensor, seed: int = 0) -> np.ndarray:
    """The rows of ``x`` with norms spread log-uniformly over [1e-3, 1e3]."""
    x = x.double().numpy()
    norms = 10 ** np.random.default_rng(seed).uniform(-3, 3, size=(x.shape[0], 1))
    norms[:8] = 1e3  # always include the largest norm
    return x / np.linalg.norm(x, axis=1, keepdims=True) * norms


def test_float16_keeps_norms_in_float32(digits):
    model, path = digits["model"], digits["path"]
    half = to_float16(path, digits["folder"] / "digits.fp16.onnx")
    x = _rescaled(digits["test"][0])
    report = verify_onnx(half, model, inputs=x)
    assert report.kind == "float16" and report.atol == TOLERANCES["float16"] == 1e-2
    assert report.ok, report.table()
    worst = {r.evaluator: r.max_abs for r in report.results if r.name == "data"}
    assert worst["reference"] < 1e-2  # measured: 5e-3 on logits up to 4
    proto = onnx.shape_inference.infer_shapes(onnx.load(str(half)))
    types = {v.name: v.type.tensor_type.elem_type for v in proto.graph.value_info}
    inits = {t.name: t.data_type for t in proto.graph.initializer}
    for node in proto.graph.node:
        if node.op_type == "Sqrt":
            assert types[node.output[0]] == onnx.TensorProto.FLOAT  # the norm N: float32
        if node.op_type == "Gemm":
            assert inits[node.input[1]] == onnx.TensorProto.FLOAT16  # the weights: float16
    assert len(norm_subgraphs(proto)) == len(model.activations)
    onnx.checker.check_model(proto, full_check=True)


def test_naive_float16_overflows_where_onnxruntime_hides_it(digits):
    """Negative control: every node in float16 makes |z|^2 overflow at input norms near 1e3."""
    naive = to_float16(digits["path"], digits["folder"] / "naive.onnx", keep_norm_float32=False)
    x = _rescaled(digits["test"][0])
    report = verify_onnx(naive, digits["model"], inputs=x, raise_on_failure=False)
    worst = {r.evaluator: r.max_abs for r in report.results if r.name == "data"}
    assert worst["reference"] > 1.0  # N = inf -> gain 0: a hidden layer is zeroed
    assert worst["onnxruntime"] < 1e-2  # ... while onnxruntime's CPU provider upcasts silently
    assert not report.ok


def test_int8_dynamic_accuracy_within_one_point(digits):
    x, y = digits["test"]
    out = digits["folder"] / "digits.int8.onnx"
    report = quantize_int8(digits["path"], out, labelled=(x, y))
    assert report.mode == "dynamic" and report.per_channel and report.reduce_range
    assert report.accuracy_before > 0.95
    assert report.accuracy_change >= -1.0  # measured: -0.25 pp (one test image of 397)
    assert report.quantized_nodes == 3
    assert report.size_after < 0.5 * report.size_before
    ops = ops_used(onnx.load(str(out)))
    assert ops["MatMulInteger"] == 3  # the three affine maps
    assert ops["MatMul"] == len(digits["model"].activations)  # norms (z*z) @ 1 stay float
    assert report.excluded_nodes == sum(len(g) for g in norm_subgraphs(onnx.load(str(out))))
    # both evaluators agree with each other; the accuracy change is within the 1 pp default
    checked = verify_onnx(out, digits["model"], inputs=x, labels=y)
    assert checked.kind == "int8" and checked.max_accuracy_drop == 1.0
    data = {r.evaluator: r.max_abs for r in checked.results if r.name == "data"}
    assert abs(data["onnxruntime"] - data["reference"]) < 1e-5
    assert min(checked.accuracy_change.values()) >= -1.0
    assert "accuracy (labelled data)" in report.table()


def test_int8_static_qdq_with_calibration(digits):
    (x_train, _), (x, y) = digits["train"], digits["test"]
    out = digits["folder"] / "digits.qdq.onnx"
    report = quantize_int8(digits["path"], out, calibration=x_train[:256], labelled=(x, y))
    assert report.mode == "static QDQ"
    assert report.accuracy_change >= -1.0  # measured: +0.00 pp
    assert report.quantized_nodes == 3  # the affine maps, not the norms' MatMul with ones
    proto = onnx.load(str(out))
    assert {"QuantizeLinear", "DequantizeLinear"} <= set(ops_used(proto))
    checked = verify_onnx(out, digits["model"], inputs=x, labels=y)  # opset 19: both evaluators
    assert checked.opset == 19 and checked.ok
    with pytest.raises(ExportError, match="calibration of shape"):
        quantize_int8(digits["path"], out, calibration=x_train[:, :10])


def _zero_int8_weights(src, dst) -> int:
    """A copy of the int8 file ``src`` whose quantised weight matrices are all zero (edited with
    ``onnx.numpy_helper``: scales, zero points and biases untouched); returns how many."""
    proto = onnx.load(str(src))
    count = 0
    for init in proto.graph.initializer:
        weight = numpy_helper.to_array(init)
        if weight.dtype == np.int8 and weight.ndim == 2:
            init.CopyFrom(numpy_helper.from_array(np.zeros_like(weight), init.name))
            count += 1
    onnx.save(proto, str(dst))
    return count


@pytest.fixture(scope="module")
def int8_files(digits):
    """The honest dynamic and static QDQ int8 files of the digits model."""
    folder, x_train = digits["folder"], digits["train"][0]
    return {
        "dynamic": quantize_int8(digits["path"], folder / "crit.int8.onnx").path,
        "static": quantize_int8(
            digits["path"], folder / "crit.qdq.onnx", calibration=x_train[:256]
        ).path,
    }


def _bounded(report) -> list:
    return [r for r in report.results if r.name not in INT8_UNBOUNDED_SETS]


@pytest.mark.parametrize("mode", ["dynamic", "static"])
def test_int8_criterion_passes_an_honest_export_without_labels(digits, int8_files, mode):
    model, (x, _) = digits["model"], digits["test"]
    for inputs in (None, x):  # adversarial sets only, then with unlabelled real data
        report = verify_onnx(int8_files[mode], model, inputs=inputs)
        assert report.ok and report.kind == "int8", report.table()
        assert report.max_relative_error == INT8_MAX_RELATIVE_ERROR == 0.5
        assert report.min_agreement == INT8_MIN_AGREEMENT == 0.8
        assert 3 < report.output_scale < 5  # the float model's largest |logit|
        rel = max(r.max_rel for r in _bounded(report))
        assert 0 < rel < 0.2  # measured: dynamic 0.03, static 0.15 (of the output scale)
        assert min(report.agreement.values()) >= 0.9  # measured: 0.95 (static, no data) to 0.99
        assert "top-1 agreement >= 0.8" in report.table()


@pytest.mark.parametrize("mode", ["dynamic", "static"])
def test_int8_criterion_fails_a_file_with_zeroed_weights(digits, int8_files, mode, tmp_path):
    """Without labels a zeroed file used to pass (only NaN/Inf and accuracy were checked)."""
    model, (x, y) = digits["model"], digits["test"]
    zeroed = tmp_path / "zeroed.onnx"
    assert _zero_int8_weights(int8_files[mode], zeroed) == 3  # the three affine maps
    for inputs in (None, x):
        report = verify_onnx(zeroed, model, inputs=inputs, raise_on_failure=False)
        assert not report.ok
        assert not any(r.ok for r in _bounded(report))  # every bounded set fails its limit
        assert max(r.max_rel for r in _bounded(report)) > 0.95  # measured: 1.01 x the scale
        assert max(report.agreement.values()) < 0.2  # measured: 0.08 (chance is 0.1)
        text = "; ".join(report.failures)
        assert "expected max abs error <=" in text and "(int8: 0.5 x max(0.001" in text
        assert "expected top-1 agreement with the float model >= 0.8, got 0.0" in text
    with pytest.raises(VerificationError, match="expected top-1 agreement"):
        verify_onnx(zeroed, model, inputs=x, labels=y)  # labelled: the accuracy drop too


def _untrained(last_scale: float) -> ip.IsotropicMLP:
    """An untrained model (zero biases: its output at 0 is exactly 0) whose last weight matrix
    is scaled by ``last_scale``."""
    model = ip.IsotropicMLP(WIDTHS, generator=torch.Generator().manual_seed(0)).eval()
    with torch.no_grad():
        model.linears[-1].weight.mul_(last_scale)
    return model


@pytest.mark.parametrize(
    ("last_scale", "scale_range"),
    [
        (1.0, (0.1, 1.0)),  # ordinary: exactly 0 on the zeros set (inf * 0 gave NaN there)
        (0.0, (0.0, 0.0)),  # every output exactly 0: no division by a zero scale
        (1e-40, (1e-42, 1e-40)),  # near 0: float32 int8 output underflows to 0, float64 not
    ],
)
@pytest.mark.parametrize("calibrated", [False, True])
def test_int8_criterion_passes_untrained_zero_output_models(
    tmp_path, last_scale, scale_range, calibrated
):
    model = _untrained(last_scale)
    rows = torch.randn(128, WIDTHS[0], generator=torch.Generator().manual_seed(1))
    path = export_onnx(model, tmp_path / "untrained.onnx")
    calibration = rows if calibrated else None
    int8 = quantize_int8(path, tmp_path / "untrained.int8.onnx", calibration=calibration).path
    report = verify_onnx(int8, model)
    assert report.ok, report.table()
    assert scale_range[0] <= report.output_scale <= scale_range[1]
    assert report.int8_limit == 0.5 * max(INT8_SCALE_FLOOR, report.output_scale)
    assert report.to_dict()["int8_limit"] == report.int8_limit
    assert all(math.isfinite(r.max_rel) for r in report.results)
    zeros = [r for r in report.results if r.name == "zeros"]
    assert zeros and all(r.max_abs == 0.0 and r.ok for r in zeros)
    assert min(report.agreement.values()) >= 0.95


def test_allowed_error_holds_a_zero_output_to_atol() -> None:
    y_ref = np.array([[0.0, 2.0, -4.0]])
    assert allowed_error(y_ref, math.inf, math.inf).tolist() == [[math.inf] * 3]  # was NaN at 0
    assert allowed_error(y_ref, 1e-3, 0.5).tolist() == [[1e-3, 1.001, 2.001]]
    assert allowed_error(y_ref, 0.0, math.inf).tolist() == [[0.0, math.inf, math.inf]]


def test_int8_output_scale_leaves_out_the_large_set() -> None:
    """``S`` is the float model's scale on the sets int8 represents; ``large`` (norms 1e2-1e4
    times the data's) would inflate the bound on every other set."""
    from isoproof.exporters.verify import VerificationReport, _set_int8_scale

    inf = math.inf
    report = VerificationReport("m.onnx", "int8", 0, 0, 0, {}, [], 18, "dynamic", inf, inf)
    refs = {"random": np.array([[1.0, -2.0]]), "zero": np.zeros((1, 2)),
            "large": np.array([[1e6, np.inf]])}  # fmt: skip
    _set_int8_scale(report, refs)
    assert report.output_scale == 2.0


def test_float_files_get_no_int8_agreement(digits, tmp_path) -> None:
    model = digits["model"]
    report = verify_onnx(export_onnx(model, tmp_path / "f.onnx"), model)
    assert report.ok and report.kind == "float32"
    assert report.agreement == {} and report.min_agreement is None


def test_top1_agreement_counts_ties_within_the_floor() -> None:
    ref = np.array([[0.0, 1.0, 0.5], [1e-4, 0.0, 0.0], [1.0, 1.0 - 1e-4, 0.0], [3.0, 0.0, 0.0]])
    got = np.array([[0.0, 2.0, 0.0], [0.0, 0.0, 1e-9], [0.0, 1.0, 0.0], [0.0, 0.1, 0.0]])
    assert top1_agreement(got, ref, 1e-3).tolist() == [True, True, True, False]
    assert top1_agreement(got, ref, 0.0).tolist() == [True, False, False, False]


def test_ort_format_loads_and_matches(digits, tmp_path):
    ort_file = to_ort_format(digits["mobile_path"], tmp_path / "ort")
    assert ort_file.suffix == ".ort" and ort_file.stat().st_size > 0
    assert list((tmp_path / "ort").glob("*.config"))  # the op list for a reduced build
    x = digits["test"][0][:5].numpy()
    session = ort_session(ort_file)
    got = np.concatenate([session.run(None, {"input": x[i : i + 1]})[0] for i in range(5)])
    want = digits["mobile_model"](torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)


def test_mobile_usability_per_provider(digits):
    fixed = mobile_usability(digits["mobile_path"])
    assert fixed.dynamic_inputs == []
    assert set(fixed.by_ep) == {"NNAPI", "CoreML NeuralNetwork", "CoreML MLProgram"}
    for ep in fixed.eps:  # every node of the isotropic MLP runs on every mobile provider
        assert ep.supported_nodes == ep.nodes > 0 and ep.partitions == 1
        assert ep.unsupported_ops == [] and ep.suitability == "YES"
    assert "NNAPI" in fixed.table()
    dynamic = mobile_usability(digits["path"])  # control: a dynamic batch is not usable there
    assert dynamic.dynamic_inputs == ["input"]
    assert all(ep.suitability == "NO" for ep in dynamic.eps)


def test_quantizer_log_filter_is_scoped_and_narrow() -> None:
    """Only onnxruntime's pre-processing advice is dropped, and only during the call."""
    import logging

    from isoproof.exporters import quantize

    def record(path: str) -> logging.LogRecord:
        msg = "Please consider to run pre-processing before quantization."
        return logging.LogRecord("root", logging.WARNING, path, 1, msg, None, None)

    ort = "/x/site-packages/onnxruntime/quantization/quantize.py"
    root = logging.getLogger()
    before = list(root.filters)
    with quantize._quiet_quantizer():
        assert not root.filter(record(ort))
        assert root.filter(record("/work/app/mine.py"))  # someone else's message passes
    assert root.filters == before  # removed afterwards
    assert root.filter(record(ort))
