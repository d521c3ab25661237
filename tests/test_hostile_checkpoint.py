"""Hostile checkpoints (issue 16, items 1-2): every evil file is refused with a one-line
CheckpointError before anything large is allocated, and editing any behaviour-changing metadata
field is detected by the SHA-256."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import batch, make_model

import isoproof as ip


def _raw(path: Path, header: dict, data: bytes) -> Path:
    blob = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + data)
    return path


def _edit_config(src: Path, dst: Path, **changes) -> Path:
    """Copy a real checkpoint with its config edited (tensors and digest untouched)."""
    raw = src.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8 : 8 + n])
    cfg = json.loads(header["__metadata__"]["config"]) | changes
    header["__metadata__"]["config"] = json.dumps(cfg)
    return _raw(dst, header, raw[8 + n :])


def evil_files(folder: Path) -> dict[str, Path]:
    """The files of issue 16 plus header attacks, all a few KB."""
    good = ip.save(make_model([8, 6, 6, 4]), folder / "good.safetensors")
    raw = good.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8 : 8 + n])
    files = {
        "huge_widths": _edit_config(good, folder / "a.safetensors", widths=[10**9, 10**9]),
        "wide_widths": _edit_config(good, folder / "b.safetensors", widths=[8, 20000, 20000, 4]),
        "dtype_edited": _edit_config(good, folder / "c.safetensors", dtype="float16"),
        "eps_edited": _edit_config(good, folder / "d.safetensors", eps=0.5),
        "radial_edited": _edit_config(good, folder / "e.safetensors", radial="softsign"),
        "many_layers": _edit_config(good, folder / "f.safetensors", widths=[2] * 5000),
    }
    big = dict(header)
    big["linears.0.weight"] = {"dtype": "F64", "shape": [10**6, 10**6], "data_offsets": [0, 8]}
    files["huge_tensor_shape"] = _raw(folder / "g.safetensors", big, raw[8 + n :])
    files["huge_header_length"] = folder / "h.safetensors"
    files["huge_header_length"].write_bytes(struct.pack("<Q", 2**62) + b"{}" + b"\0" * 64)
    past = dict(header)
    past["linears.0.weight"] = dict(header["linears.0.weight"])
    start = header["linears.0.weight"]["data_offsets"][0]
    past["linears.0.weight"]["data_offsets"] = [start + 10**9, start + 10**9 + 384]
    files["offsets_past_end"] = _raw(folder / "i.safetensors", past, raw[8 + n :])
    meta = dict(header["__metadata__"]) | {"config": "[" * 100_000}
    files["deep_config"] = _raw(folder / "j.safetensors", header | {"__metadata__": meta}, b"")
    files["garbage"] = folder / "k.safetensors"
    files["garbage"].write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!" + b"x" * 32)
    return files


@pytest.mark.parametrize(
    "name",
    [
        "huge_widths",
        "wide_widths",
        "dtype_edited",
        "eps_edited",
        "radial_edited",
        "many_layers",
        "huge_tensor_shape",
        "huge_header_length",
        "offsets_past_end",
        "deep_config",
        "garbage",
    ],
)
def test_evil_file_is_refused_in_one_line(tmp_path, name):
    path = evil_files(tmp_path)[name]
    with pytest.raises(ip.CheckpointError) as info:
        ip.load(path)
    msg = str(info.value)
    assert "\n" not in msg and str(path) in msg


def test_edited_eps_is_caught_by_the_digest(tmp_path):
    """eps changes behaviour but no tensor shape: only the digest can see the edit."""
    path = evil_files(tmp_path)["eps_edited"]
    with pytest.raises(ip.CheckpointError, match="SHA-256"):
        ip.load(path)


def test_the_stored_eps_is_used(tmp_path):
    """load rebuilds with the config's eps (not the default): outputs differ otherwise."""
    model = make_model([4, 6, 3], intrinsic_length="none", scale=0.0)
    for act in model.activations:
        act.eps = 0.7  # small inputs have N < eps: the clamp sets the output
    path = ip.save(model, tmp_path / "m.safetensors")
    x = 1e-3 * batch(4)
    default_eps = ip.IsotropicMLP.from_config(model.config() | {"eps": 1e-3})
    default_eps.load_state_dict(model.state_dict())
    assert not torch.allclose(default_eps(x), model(x))  # so the test can fail
    assert torch.equal(ip.load(path)(x), model(x))


def test_load_meta_device_is_refused(tmp_path):
    path = ip.save(make_model([4, 6, 3]), tmp_path / "m.safetensors")
    with pytest.raises(ip.IsoproofError, match="meta"):
        ip.load(path, device="meta")


def test_nonfinite_model_is_not_saved(tmp_path):
    model = make_model([4, 6, 3])
    with torch.no_grad():
        model.linears[1].weight[0, 0] = float("nan")
    with pytest.raises(ip.NonFiniteError, match=r"linears\.1\.weight"):
        ip.save(model, tmp_path / "m.safetensors")
    assert list(tmp_path.iterdir()) == []


_PEAK = """
import resource, sys
from pathlib import Path
sys.path.insert(0, {tests!r})
import isoproof as ip
from test_hostile_checkpoint import evil_files
files = evil_files(Path({folder!r}))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
lines = []
for name, path in files.items():
    try:
        ip.load(path)
    except ip.CheckpointError as e:
        lines.append(str(e))
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(len(files), len(lines), (after - before) / 1024)
"""


def test_peak_memory_of_all_evil_files_is_under_100_mb(tmp_path):
    """In a fresh process: loading every evil file raises CheckpointError and the peak resident
    memory grows by less than 100 MB (it grew by 1.9 GB for one of them before the fix)."""
    code = _PEAK.format(tests=str(Path(__file__).parent), folder=str(tmp_path))
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True
    ).stdout.split()
    total, refused, grown_mb = int(out[0]), int(out[1]), float(out[2])
    assert refused == total == 11
    assert grown_mb < 100, grown_mb


@pytest.mark.parametrize("name", ["huge_tensor_shape", "offsets_past_end"])
def test_sizes_are_checked_in_the_header_before_anything_is_read(tmp_path, name):
    """The header's byte ranges are checked first (not left to the config or safetensors)."""
    with pytest.raises(ip.CheckpointError, match="byte range"):
        ip.load(evil_files(tmp_path)[name])
