"""save / load: identical outputs for every resized model; damaged files are refused, never
unpickled; writes are atomic."""

from __future__ import annotations

import json
import pickle

import pytest
import torch
from conftest import batch, make_model
from safetensors import safe_open
from safetensors.torch import save_file

import isoproof as ip
from isoproof.app.cli import main as cli


def resized_models():
    dense = make_model([6, 8, 8, 8, 3])
    grown = make_model([6, 8, 8, 8, 3], seed=1)
    ip.grow(grown, 1, 3)
    pruned = make_model([6, 8, 8, 8, 3], seed=2)
    ip.prune(pruned, 2, 2)
    sparse = make_model([6, 8, 8, 8, 8, 3], seed=3)
    ip.sparsify(sparse)
    tasks = make_model([6, 8, 8, 3], seed=4, psi="constant", intrinsic_length="constant")
    ip.add_inputs(tasks, 2)
    ip.add_outputs(tasks, 1)
    plain = make_model([6, 7, 3], seed=5, psi="none", intrinsic_length="none", radial="log1p")
    f32 = make_model([6, 8, 8, 3], seed=6, dtype=torch.float32)
    ip.sparsify(f32)
    return {
        "dense": dense,
        "grown": grown,
        "pruned": pruned,
        "sparsified": sparse,
        "tasks": tasks,
        "plain": plain,
        "float32": f32,
    }


@pytest.mark.parametrize("name", list(resized_models()))
def test_roundtrip_is_bit_identical(tmp_path, name):
    model = resized_models()[name]
    path = ip.save(model, tmp_path / "m.safetensors")
    loaded = ip.load(path)
    assert loaded.widths == model.widths and loaded.diagonal_layers == model.diagonal_layers
    assert loaded.config() == model.config()
    x = batch(model.widths[0], dtype=model.dtype)
    assert torch.equal(loaded(x), model(x))
    assert not list(tmp_path.glob(".*tmp"))  # no temporary file left behind


def test_metadata_has_the_config_and_version(tmp_path):
    model = make_model([6, 8, 8, 3])
    ip.sparsify(model)
    path = ip.save(model, tmp_path / "m.safetensors")
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    cfg = json.loads(meta["config"])
    assert cfg["widths"] == [6, 8, 8, 3] and cfg["diagonal_layers"] == [1]
    assert meta["isoproof_version"] == ip.__version__ and len(meta["sha256"]) == 64


def _saved(tmp_path):
    return ip.save(make_model([6, 8, 8, 3]), tmp_path / "m.safetensors")


def test_truncated_file(tmp_path):
    path = _saved(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ip.CheckpointError, match=r"not a readable safetensors|byte range"):
        ip.load(path)


def test_flipped_byte_in_tensor_data(tmp_path):
    path = _saved(tmp_path)
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ip.CheckpointError, match="SHA-256"):
        ip.load(path)


def test_metadata_mismatching_the_tensors(tmp_path):
    model = make_model([6, 8, 8, 3])
    tensors = {k: v.contiguous() for k, v in model.state_dict().items()}
    cfg = model.config() | {"widths": [6, 9, 8, 3]}
    from isoproof.io import FORMAT, _digest

    meta = {"format": FORMAT, "config": json.dumps(cfg), "sha256": _digest(tensors)}
    save_file(tensors, str(tmp_path / "bad.safetensors"), metadata=meta)
    with pytest.raises(ip.CheckpointError, match="wrong shape or dtype"):
        ip.load(tmp_path / "bad.safetensors")
    save_file(tensors, str(tmp_path / "foreign.safetensors"), metadata={"format": "other"})
    with pytest.raises(ip.CheckpointError, match="expected a format in"):
        ip.load(tmp_path / "foreign.safetensors")


def test_missing_file(tmp_path):
    with pytest.raises(ip.CheckpointError, match="no such file"):
        ip.load(tmp_path / "nope.safetensors")


class _Exploit:
    def __reduce__(self):
        return (open, ("/tmp/isoproof-pwned", "w"))  # would create a file if unpickled


def test_a_pickle_is_refused_and_never_unpickled(tmp_path):
    target = tmp_path / "evil.safetensors"
    target.write_bytes(pickle.dumps({"weights": _Exploit()}))
    marker = "/tmp/isoproof-pwned"
    import os

    if os.path.exists(marker):
        os.remove(marker)
    with pytest.raises(ip.CheckpointError):
        ip.load(target)
    assert not os.path.exists(marker)


def test_failed_save_keeps_the_previous_file(tmp_path, monkeypatch):
    path = _saved(tmp_path)
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("isoproof.io.save_file", boom)
    with pytest.raises(OSError, match="disk full"):
        ip.save(make_model([6, 5, 3]), path)
    assert path.read_bytes() == before
    assert not list(tmp_path.glob(".*tmp"))


def test_cli_info(tmp_path, capsys):
    model = make_model([6, 8, 8, 8, 3])
    ip.sparsify(model)
    path = ip.save(model, tmp_path / "m.safetensors")
    assert cli(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "[6, 8, 8, 8, 3]" in out and "diagonal" in out
    assert f"stored parameters {model.count_parameters()}" in out
    (tmp_path / "junk.safetensors").write_bytes(b"not a model")
    assert cli(["info", str(tmp_path / "junk.safetensors")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("isoproof info: error:") and "\n" not in err
    with pytest.raises(SystemExit) as exc:
        cli(["info", str(tmp_path / "missing.safetensors")])
    assert exc.value.code == 2
    assert "expected an existing file" in capsys.readouterr().err


def test_load_reads_the_model_out_of_a_training_checkpoint(tmp_path):
    from isoproof.checkpoint import write_checkpoint

    model = make_model([6, 8, 3])
    opt = torch.optim.Adam(model.parameters())
    model(batch(6)).sum().backward()
    opt.step()
    path = write_checkpoint(tmp_path / "run.safetensors", model, opt, epoch=3,
                            history={}, generators={"g": torch.Generator()})  # fmt: skip
    x = batch(6)
    assert torch.equal(ip.load(path)(x), model(x))
    meta = ip.io.read_metadata(path)
    assert meta["training"]["epoch"] == 3 and meta["training"]["optimizer"]["class"] == "Adam"
    assert ip.io.model_digest(ip.load(path)) == ip.io.model_digest(model)
