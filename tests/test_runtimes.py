"""Edge runtimes (GitHub issue 15): onnxruntime-web in headless Chromium, and OpenVINO on CPU.

A digits classifier is trained for 4 epochs, pruned (8 neurons per hidden layer) and
sparsified, saved, and exported by the CLI (``isoproof export --int8``). Both files then run in
every runtime back-end through :func:`exporters.verify_onnx` on the same input sets (random,
real digits, zeros, norms 1e-12..1e4, batch 1 and 7): float32 parity <= 1e-5 against float64
torch, int8 within the int8 criterion (error relative to the output scale, top-1 agreement,
accuracy). A file whose weights were changed after export, and a file no runtime can load, are
failures in every back-end. The browser starts once per session.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from isoproof.exporters import RuntimeUnavailableError, verify_onnx
from isoproof.exporters.backends import BACKENDS, open_backend

import isoproof as ip
from isoproof.app.cli import main

RUNTIMES = ("onnxruntime", "reference", "openvino", "browser")
EDGE = ("openvino", "browser")


def _train(model: ip.IsotropicMLP, data, epochs: int = 4) -> None:
    """A few AdamW epochs on digits (a real classifier, so accuracy changes mean something)."""
    g = torch.Generator().manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(epochs):
        perm = torch.randperm(len(data.x_train), generator=g)
        for i in range(0, len(perm), 128):
            b = perm[i : i + 128]
            loss = F.cross_entropy(model(data.x_train[b]), data.y_train[b]) + model.penalty()
            opt.zero_grad()
            loss.backward()
            opt.step()


@pytest.fixture(scope="module")
def exported(tmp_path_factory, isolated_cache):
    """The pruned + sparsified digits model, its checkpoint and the CLI's fp32 / int8 files."""
    from isoproof.data import load_digits

    folder = tmp_path_factory.mktemp("runtimes")
    data = load_digits(seed=0)
    model = ip.IsotropicMLP([64, 48, 48, 10], generator=torch.Generator().manual_seed(0))
    _train(model, data)
    ip.prune(model, 0, 8, probe=data.x_test)
    ip.prune(model, 1, 8, probe=data.x_test)
    ip.sparsify(model, probe=data.x_test)
    assert model.widths == [64, 40, 40, 10]
    assert any(isinstance(m, ip.DiagonalLinear) for m in model.modules())
    checkpoint = ip.save(model, folder / "model.safetensors")
    x, y = data.x_test.numpy(), data.y_test.numpy()
    assert (model(data.x_test).argmax(1) == data.y_test).float().mean() > 0.9
    np.savez(folder / "test.npz", x=x, y=y)
    out = folder / "model.onnx"
    cli = ["export", str(checkpoint), "-o", str(out), "--int8", "--data", str(folder / "test.npz")]
    assert main(cli) == 0
    return {
        "model": ip.load(checkpoint),
        "x": x,
        "y": y,
        "fp32": out,
        "int8": out.with_suffix(".int8.onnx"),
        "folder": folder,
        "checkpoint": checkpoint,
    }


def _runtime_marks(names):
    marks = {"browser": pytest.mark.browser, "openvino": pytest.mark.openvino}
    return [pytest.param(n, marks=[marks[n]] if n in marks else []) for n in names]


@pytest.mark.parametrize("runtime", _runtime_marks(EDGE))
def test_fp32_parity_on_adversarial_sets(exported, runtime, request):
    if runtime == "browser":
        request.getfixturevalue("browser")
    report = verify_onnx(
        exported["fp32"],
        exported["model"],
        inputs=exported["x"],
        labels=exported["y"],
        evaluators=[runtime],
        latency_runs=20,
    )
    sets = {r.name: r for r in report.results if r.evaluator == runtime}
    assert set(sets) == {"random", "data", "zeros", "tiny", "large", "batch1", "batch7"}
    for r in sets.values():
        assert r.max_abs <= 1e-5 and r.nonfinite == 0 and r.ok, r
        assert r.max_abs_torch <= 1e-5
    assert report.accuracy[runtime] == report.accuracy["torch"]
    times = report.latency[runtime]
    assert set(times) == {"batch1", "batch64"} and all(0 < t < 1 for t in times.values())
    summary = report.runtimes()[runtime]
    assert summary["max_abs"] == max(r.max_abs for r in sets.values())


@pytest.mark.parametrize("runtime", _runtime_marks(EDGE))
def test_int8_runs_within_accuracy_criterion(exported, runtime, request):
    if runtime == "browser":
        request.getfixturevalue("browser")
    report = verify_onnx(
        exported["int8"],
        exported["model"],
        inputs=exported["x"],
        labels=exported["y"],
        evaluators=[runtime],
    )
    assert report.kind == "int8" and report.ok
    assert all(r.nonfinite == 0 for r in report.results)
    assert abs(report.accuracy_change[runtime]) <= 1.0


def _tampered(path, folder):
    """The same graph with one weight changed by 0.5: a silently corrupted file."""
    proto = onnx.load(str(path))
    for init in proto.graph.initializer:
        arr = onnx.numpy_helper.to_array(init)
        if arr.ndim == 2 and arr.size > 100:
            arr = arr.copy()
            arr.flat[7] += 0.5
            init.CopyFrom(onnx.numpy_helper.from_array(arr, init.name))
            break
    out = folder / "tampered.onnx"
    onnx.save(proto, str(out))
    return out


def _broken(path, folder):
    """A weight with the wrong shape: parses, but no runtime can build the graph."""
    proto = onnx.load(str(path))
    for init in proto.graph.initializer:
        arr = onnx.numpy_helper.to_array(init)
        if arr.ndim == 2 and arr.size > 100:
            init.CopyFrom(onnx.numpy_helper.from_array(arr[:, :-3].copy(), init.name))
            break
    out = folder / "broken.onnx"
    onnx.save(proto, str(out))
    return out


@pytest.mark.parametrize("runtime", _runtime_marks(RUNTIMES))
def test_corrupted_model_fails_in_every_runtime(exported, runtime, request):
    if runtime == "browser":
        request.getfixturevalue("browser")
    model = exported["model"]
    tampered = verify_onnx(
        _tampered(exported["fp32"], exported["folder"]),
        model,
        evaluators=[runtime],
        raise_on_failure=False,
    )
    assert not tampered.ok
    assert any(f.startswith(f"{runtime} on 'random'") for f in tampered.failures), tampered.failures
    broken = verify_onnx(
        _broken(exported["fp32"], exported["folder"]),
        model,
        evaluators=[runtime],
        raise_on_failure=False,
    )
    assert not broken.ok and not broken.results
    assert any(f.startswith(runtime) for f in broken.failures), broken.failures


def test_missing_runtimes_say_what_to_install(exported, monkeypatch, capsys):
    from isoproof.exporters import browser as web

    monkeypatch.setitem(sys.modules, "openvino", None)  # import fails as if not installed
    with pytest.raises(
        RuntimeUnavailableError, match=r"install it with pip install 'isoproof\[edge\]'"
    ):
        open_backend("openvino", exported["fp32"], onnx.load(str(exported["fp32"])))
    monkeypatch.setattr(web, "WEB_DIR", exported["folder"])  # no node_modules there
    monkeypatch.setattr(web, "_SHARED", [])
    with pytest.raises(RuntimeUnavailableError, match=r"npm package onnxruntime-web.*make web"):
        verify_onnx(exported["fp32"], exported["model"], evaluators=["browser"])
    code = main(
        ["verify", str(exported["fp32"]), str(exported["checkpoint"]), "--runtime", "openvino"]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "pip install 'isoproof[edge]'" in err
    assert "Traceback" not in err


@pytest.mark.browser
@pytest.mark.openvino
def test_cli_verify_every_runtime(exported, browser, capsys):
    args = ["verify", str(exported["fp32"]), str(exported["checkpoint"])]
    code = main([*args, "--runtime", ",".join(["ort", *BACKENDS[1:]]), "--latency", "10"])
    out = capsys.readouterr().out
    assert code == 0, out
    table = out.split("max abs vs float64", 1)[1]
    for name in BACKENDS:
        assert f"\n{name} " in table
    assert "verification: PASS" in out


SEVEN = [[(0.2, 0.15), (0.8, 0.15)], [(0.8, 0.15), (0.55, 0.5), (0.4, 0.88)]]


@pytest.mark.browser
def test_web_bundle_predicts_a_drawn_digit_like_torch(exported, browser, tmp_path):
    folder = tmp_path / "web"
    assert main(["export", str(exported["checkpoint"]), "--web", str(folder)]) == 0
    meta = json.loads((folder / "model.json").read_text())
    assert meta["input_dims"] == [None, 64] and meta["image"] == [8, 8]
    assert meta["widths"] == [64, 40, 40, 10] and meta["pixel_max"] == 16.0
    assert meta["parity"]["browser"] <= 1e-5
    for name in ("index.html", "app.js", "model.onnx", "ort/ort.wasm.min.js"):
        assert (folder / name).is_file(), name

    url = browser.mount(folder) + "index.html"
    browser.goto(url, wait="window.isoproofDemo.ready || window.isoproofDemo.error")
    assert browser.evaluate("window.isoproofDemo.error || null") is None
    browser.draw("#pad", SEVEN)
    state = browser.evaluate("window.isoproofDemo", wait="window.isoproofDemo.count >= 2")
    raw = np.array(state["raw"]).reshape(8, 8)
    assert raw.min() >= 0 and raw.max() <= 16 and raw.max() > 8
    assert raw[0].sum() > raw[-1, :4].sum()  # the bar of the 7 is on top
    x = np.array(state["input"], dtype=np.float32)
    expected = ((raw.reshape(-1) - meta["mean"]) / np.array(meta["std"])).astype(np.float32)
    np.testing.assert_allclose(x, expected, rtol=0, atol=1e-5)
    with torch.no_grad():
        logits = exported["model"](torch.from_numpy(x)[None]).numpy()[0]
    np.testing.assert_allclose(state["logits"], logits, rtol=0, atol=1e-5)
    assert state["prediction"] == int(logits.argmax())
    facts = browser.evaluate("document.getElementById('facts').innerText")
    assert "64 - 40 - 40 - 10" in facts
    assert browser.evaluate("document.getElementById('prediction').innerText") == str(
        state["prediction"]
    )
    shot = browser.screenshot(tmp_path / "web.png")["path"]
    assert Path(shot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
