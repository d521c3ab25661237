"""Nothing lost through the CLI (issue 16, items 3, 5, 8, 9): outputs never overwrite inputs or
files of another kind, export --verify writes only verified files, a different source fails."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import batch, make_model

import isoproof as ip
from isoproof.app.cli import main


def _ckpt(tmp_path, seed=0):
    return ip.save(make_model([6, 8, 8, 3], dtype=torch.float32, seed=seed), tmp_path / "m.st")


def test_output_that_is_an_input_or_another_kind_is_refused(tmp_path, capsys):
    ckpt = _ckpt(tmp_path)
    before = ckpt.read_bytes()
    assert main(["spectra", str(ckpt), "-o", str(ckpt)]) == 2
    err = capsys.readouterr().err.strip()
    assert "other than the input" in err and "\n" not in err
    other = ip.save(make_model([6, 8, 3]), tmp_path / "other.safetensors")
    kept = other.read_bytes()
    assert main(["spectra", str(ckpt), "-o", str(other)]) == 2
    assert "--force" in capsys.readouterr().err
    assert ckpt.read_bytes() == before and other.read_bytes() == kept
    assert main(["spectra", str(ckpt), "-o", str(other), "--force"]) == 0
    assert other.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("flag", ["--fp16", "--int8"])
def test_export_checks_its_derived_files_before_any_work(tmp_path, capsys, flag):
    """m.fp16.onnx / m.int8.onnx are outputs too: a directory there, or the --data input, is
    one line before m.onnx is written (m.onnx was left behind, then an OSError)."""
    ckpt = _ckpt(tmp_path)
    out = tmp_path / "m.onnx"
    derived = out.with_suffix(f".{flag[2:]}.onnx")
    derived.mkdir()
    assert main(["export", str(ckpt), "-o", str(out), flag]) == 2
    err = capsys.readouterr().err
    assert f"expected a file path for {flag}, got a directory ({str(derived)!r})" in err
    derived.rmdir()
    derived.write_bytes(b"inputs")  # passed as --data: never replaced by the export
    assert main(["export", str(ckpt), "-o", str(out), flag, "--data", str(derived)]) == 2
    assert "expected an output path other than the input" in capsys.readouterr().err
    assert not out.exists() and derived.read_bytes() == b"inputs"


def test_collapse_save_is_not_the_onnx_file(tmp_path, capsys):
    ckpt = _ckpt(tmp_path)
    out = tmp_path / "c.onnx"
    assert main(["collapse", str(ckpt), "-o", str(out), "--save", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"expected a --save path other than the -o file, got {str(out)!r}" in err
    assert err.count("\n") == 1 and not out.exists()


def test_verify_json_never_overwrites_the_checkpoint_and_checks_the_source(tmp_path, capsys):
    ckpt = _ckpt(tmp_path)
    onnx_path = tmp_path / "m.onnx"
    assert main(["export", str(ckpt), "-o", str(onnx_path)]) == 0
    before = ckpt.read_bytes()
    assert main(["verify", str(onnx_path), str(ckpt), "--json", str(ckpt)]) == 2
    assert ckpt.read_bytes() == before
    # same architecture, other weights: the recorded source checksum differs
    model = ip.load(ckpt)
    with torch.no_grad():
        model.linears[0].bias.add_(1e-9)
    near = ip.save(model, tmp_path / "near.safetensors")
    capsys.readouterr()
    assert main(["verify", str(onnx_path), str(near)]) == 1
    assert "different model" in capsys.readouterr().err
    assert main(["verify", str(onnx_path), str(near), "--allow-different-source"]) == 0


def test_export_verify_writes_nothing_on_bad_data(tmp_path, capsys):
    ckpt = _ckpt(tmp_path)
    np.save(tmp_path / "x.npy", batch(5, 10, dtype=torch.float32).numpy())  # 5 columns, not 6
    out = tmp_path / "m.onnx"
    assert (
        main(["export", str(ckpt), "-o", str(out), "--verify", "--data", str(tmp_path / "x.npy")])
        == 2
    )
    assert "expected --data x of shape [rows, 6]" in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob(".isoproof-export-*"))


def test_export_verify_failure_leaves_nothing(tmp_path, capsys, monkeypatch):
    import isoproof.app.cli.cmd_export as cmd

    ckpt = _ckpt(tmp_path)
    out = tmp_path / "m.onnx"
    monkeypatch.setattr(cmd, "_verify", lambda written, *a: [p.name for p in written])
    assert main(["export", str(ckpt), "-o", str(out), "--verify", "--fp16"]) == 1
    assert "nothing written" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.st"]


def test_nonfinite_model_is_not_exported(tmp_path):
    from isoproof.exporters import export_onnx

    model = make_model([6, 8, 3], dtype=torch.float32)
    with torch.no_grad():
        model.linears[0].weight[0, 0] = float("inf")
    try:
        export_onnx(model, tmp_path / "m.onnx")
    except ip.NonFiniteError as e:
        assert "linears.0.weight" in str(e)
    else:
        raise AssertionError("exported a model with Inf weights")
    assert not (tmp_path / "m.onnx").exists()


def test_experiment_defaults_to_a_fresh_folder(tmp_path, monkeypatch):
    import isoproof.app.experiments as experiments

    calls = []
    monkeypatch.setattr(experiments, "run_experiment", lambda name, **kw: calls.append(kw) or [])
    monkeypatch.chdir(tmp_path)
    assert main(["experiment", "invariance", "--quick", "--quiet"]) == 0
    assert calls[0]["out"].startswith("isoproof-experiment-")
    assert "docs" not in calls[0]["out"]
