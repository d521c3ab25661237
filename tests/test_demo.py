"""The demo's machinery (quick settings): every stage's invariant holds and every file exists."""

from __future__ import annotations

import json

import pytest

from isoproof.app.cli import main as cli
from isoproof.app.demo import _cnn_path, run_demo


def test_demo_quick(tmp_path, capsys):
    summary = run_demo(tmp_path, epochs=2, prove=False, latency_runs=5, cnn_epochs=0)
    for _op, _widths, _params, _hidden, change in summary["exact_surgery"]:
        assert change <= 1e-13  # float64: exact up to rounding
    sparsify_row = summary["exact_surgery"][-1]
    assert sparsify_row[3] < 0.45 * summary["exact_surgery"][0][3]  # hidden weights roughly halved
    assert summary["reload_identical"] and summary["onnx"]["ok"]
    assert summary["onnx"]["max_abs"] <= 1e-5
    assert summary["function_change"]["sparsify"] <= 1e-4
    assert summary["params"]["final"] <= summary["params"]["trained"]
    for path in summary["files"]:
        assert (tmp_path / path.split("/")[-1]).is_file(), path
    assert json.loads((tmp_path / "summary.json").read_text())["reload_identical"] is True
    assert summary["collapse"]["onnx_ok"] and summary["collapse"]["onnx_max_abs"] <= 1e-5
    assert summary["collapse"]["max_abs_change"] <= 1e-5  # float32 model
    out = capsys.readouterr().out
    assert "ONNX parity" in out and "[6/6]" in out and "collapse: params" in out
    assert "cnn" not in summary


@pytest.mark.slow  # two dynamo exports of a CNN
def test_demo_cnn_path(tmp_path, capsys):
    cnn = _cnn_path(tmp_path, seed=0, epochs=1, latency_runs=5)
    out = capsys.readouterr().out
    # the CNN path: buffer on channels, prune, sparsify, export, verify
    assert cnn["onnx"]["ok"] and cnn["onnx"]["max_abs"] <= 1e-5 and "Conv" in cnn["onnx"]["ops"]
    assert cnn["params"]["final"] < cnn["params"]["trained"]  # the 1x1 map stored diagonally
    assert cnn["function_change"]["sparsify"] <= 1e-4
    assert out.count("[CNN]") == 3


def test_demo_cli_rejects_bad_epochs(capsys):
    assert cli(["demo", "--epochs", "0", "--no-prove"]) == 2
    assert "expected --epochs >= 1" in capsys.readouterr().err
