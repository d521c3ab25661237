"""CLI on conv checkpoints: train --conv, info, resize, export, verify, spectra; one-line errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import isoproof as ip
from isoproof.app.cli import main

pytestmark = pytest.mark.usefixtures("isolated_cache")
SPEC = "conv=6:k=3:padding=1:pool=2,conv=6:k=1,dense=12"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("cli-conv")
    path = folder / "cnn.safetensors"
    args = ["train", "--data", "digits", "--conv", SPEC, "--epochs", "1", "--quiet"]
    assert main([*args, "--seed", "3", "-o", str(path)]) == 0
    return path


def _error(capsys, args: list[str]) -> str:
    try:
        status = main(args)
    except SystemExit as e:
        status = int(e.code or 0)
    assert status == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_train_conv_saves_an_isotropic_cnn(trained, capsys):
    model = ip.load(trained)
    assert isinstance(model, ip.IsotropicConvNet)
    assert model.input_shape == (1, 8, 8) and model.widths == [1, 6, 6, 12, 10]
    assert model.config()["layers"][0] == {
        "conv": 6, "k": 3, "stride": 1, "padding": 1, "dilation": 1, "pool": 2,
    }  # fmt: skip
    digits = ip.data.load_digits(seed=3, conv=True)
    acc = float((model(digits.x_test).argmax(1) == digits.y_test).float().mean())
    assert acc > 0.25  # one epoch already learns (chance is 0.1; measured 42%)
    assert main(["info", str(trained)]) == 0
    out = capsys.readouterr().out
    assert "input shape       [1, 8, 8]" in out and "6->6 ch, 1x1" in out and "1->6 ch, 3x3" in out


@pytest.mark.slow  # one dynamo export (~10 s idle)
def test_resize_export_verify_spectra_on_a_conv_checkpoint(trained, tmp_path, capsys):
    small = tmp_path / "small.safetensors"
    assert main(["resize", str(trained), "--prune-below", "1.0", "-o", str(small)]) == 0
    pruned = ip.load(small)
    assert sum(pruned.widths[1:-1]) < sum(ip.load(trained).widths[1:-1])
    digits = ip.data.load_digits(conv=True)
    npz = tmp_path / "x.npz"
    np.savez(npz, x=digits.x_test[:50].numpy(), y=digits.y_test[:50].numpy())
    onnx_path = tmp_path / "cnn.onnx"
    args = ["export", str(small), "-o", str(onnx_path), "--verify", "--data", str(npz)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "verification: PASS" in out and "Conv" in out
    assert main(["verify", str(onnx_path), str(small)]) == 0
    png = tmp_path / "s.png"
    assert main(["spectra", str(small), "-o", str(png)]) == 0
    assert png.stat().st_size > 1000
    x = digits.x_test[:4]
    before = pruned(x)
    assert torch.equal(ip.load(small)(x), before)  # the saved file is the pruned model


def test_conv_cli_errors_are_one_line(capsys, tmp_path):
    out = str(tmp_path / "x.safetensors")
    base = ["train", "--data", "digits", "--epochs", "1", "-o", out]
    assert "conv=C or dense=N" in _error(capsys, [*base, "--conv", "pool=2"])
    assert "conv=16:k=3" in _error(capsys, [*base, "--conv", "conv=8:pool=max"])
    assert "non-empty output" in _error(capsys, [*base, "--conv", "conv=8:k=3:pool=9"])
    assert "not allowed with argument" in _error(
        capsys, [*base, "--conv", "conv=4", "--widths", "64,10"]
    )
