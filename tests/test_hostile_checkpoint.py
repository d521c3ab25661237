"""Hostile checkpoints (issue 16, items 1-2): every evil file is refused with a one-line
CheckpointError before anything large is allocated, and editing any behaviour-changing metadata
field is detected by the SHA-256. Training checkpoints (issue 14): a forged optimiser state,
generator state or history is refused by fit(resume=...) with model and optimiser unchanged."""

from __future__ import annotations

import copy
import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import assert_unchanged, batch, forge_checkpoint, make_model, snapshot

import isoproof as ip
from isoproof.optim import named_state


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
    # valid JSON that Python's json refuses: ValueError (> 4300 digits), RecursionError
    files["deep_header"] = _raw_text(folder / "l.safetensors", '{"a": ' + "[" * 100_000 + "}")
    entry = '{"dtype": "F64", "shape": [' + "9" * 5000 + '], "data_offsets": [0, 0]}'
    files["bigint_header"] = _raw_text(folder / "m.safetensors", '{"a": ' + entry + "}")
    meta = dict(header["__metadata__"]) | {"config": "1" * 5000}
    files["bigint_config"] = _raw(
        folder / "n.safetensors", header | {"__metadata__": meta}, raw[8 + n :]
    )
    return files


def _raw_text(path: Path, header: str) -> Path:
    """A file whose header is ``header`` as given (JSON that json.dumps cannot write)."""
    path.write_bytes(struct.pack("<Q", len(header)) + header.encode())
    return path


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
        "deep_header",
        "bigint_header",
        "bigint_config",
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
    assert refused == total == 14
    assert grown_mb < 100, grown_mb


@pytest.mark.parametrize("name", ["huge_tensor_shape", "offsets_past_end"])
def test_sizes_are_checked_in_the_header_before_anything_is_read(tmp_path, name):
    """The header's byte ranges are checked first (not left to the config or safetensors)."""
    with pytest.raises(ip.CheckpointError, match="byte range"):
        ip.load(evil_files(tmp_path)[name])


# ----------------------------------------------------------------------- training checkpoints
W = "train/optimizer/linears.0.weight/"


def _set(key, value):
    def edit(tensors, training):
        tensors[key] = value

    return edit


def _drop_key(tensors, training):
    del tensors[W + "exp_avg_sq"]
    training["optimizer"]["state"]["linears.0.weight"].remove("exp_avg_sq")


def _training(path, value):
    def edit(tensors, training):
        node = training
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return edit


def _training_text(old: str, new: str):
    """The training entry's JSON text with ``old`` replaced (JSON json.dumps cannot write)."""

    def edit(tensors, training):
        text = json.dumps(training)
        assert old in text
        return text.replace(old, new, 1)

    return edit


def _history(text: bytes):
    return _set("train/history", torch.frombuffer(bytearray(text), dtype=torch.uint8))


def _group(key, value):
    return _training(["optimizer", "param_groups", 0, key], value)


def _negative_second_moment(tensors, training):
    tensors[W + "exp_avg_sq"][0, 0] = -1.0


def _nan_moment(tensors, training):
    tensors[W + "exp_avg"][0, 0] = float("nan")


def _heavier(tensors, training):
    tensors["linears.0.weight"] = tensors["linears.0.weight"] + 1e-12


def _reorder(tensors, training):
    training["optimizer"]["param_groups"][0]["params"].reverse()


def _extra_state(tensors, training):
    training["optimizer"]["state"]["nope.weight"] = ["exp_avg"]


HOSTILE_TRAINING = {
    "moment_wrong_shape": (_set(W + "exp_avg", torch.zeros(7, 64, dtype=torch.float64)),
                           r"wrong shape or dtype \[.*exp_avg: expected \[6, 64\].*got \[7, 64\]"),
    "moment_wrong_dtype": (_set(W + "exp_avg", torch.zeros(6, 64)), "wrong shape or dtype"),
    "moment_missing": (lambda t, _: t.pop(W + "exp_avg_sq"), r"missing \[.*exp_avg_sq'\]"),
    "state_key_dropped": (_drop_key, r"state keys \['exp_avg', 'exp_avg_sq', 'step'\]"),
    "moment_nan": (_nan_moment, "finite moments"),
    "step_negative": (_set(W + "step", torch.tensor(-1.0)), "whole steps >= 0"),
    "step_fraction": (_set(W + "step", torch.tensor(2.5)), "whole steps >= 0"),
    "unknown_parameter": (_extra_state, "expected state of the optimiser's parameters"),
    "other_class": (_training(["optimizer", "class"], "SGD"), "class AdamW, got 'SGD'"),
    "lr_text": (_training(["optimizer", "param_groups", 0, "lr"], "fast"), "lr"),
    "lr_negative": (_group("lr", -5.0), "AdamW accepts in group 0, got Invalid learning rate"),
    "betas_above_1": (_group("betas", [5.0, 5.0]), "Invalid beta parameter"),
    "weight_decay_negative": (_group("weight_decay", -1.0), "Invalid weight_decay"),
    "eps_zero": (_group("eps", 0.0), r"expected eps > 0 in group 0 \(.*\), got 0\.0"),
    "capturable": (_group("capturable", True), "expected capturable=False in group 0"),
    "fused": (_group("fused", True), "expected fused=None in group 0"),
    "differentiable": (_group("differentiable", True), "expected differentiable=False"),
    "foreach": (_group("foreach", False), "expected foreach=None in group 0"),
    "maximize": (_group("maximize", True), "expected maximize=False in group 0"),
    "decoupled_off": (_group("decoupled_weight_decay", False), "decoupled_weight_decay=True"),
    "second_moment_negative": (_negative_second_moment, "second moments >= 0"),
    "groups_reordered": (_reorder, "expected group 0 over the parameters"),
    "generator_garbage": (_set("train/generator/shuffle", torch.zeros(5056, dtype=torch.uint8)),
                          "generator 'shuffle'"),
    "generator_short": (_set("train/generator/shuffle", torch.zeros(16, dtype=torch.uint8)),
                        "wrong shape or dtype"),
    "history_not_json": (_history(b"\xff\xfe{"), "history as JSON"),
    "history_wrong_fields": (_history(b'{"epoch": [0, 1]}'), "History field, got one missing"),
    "history_bigint": (_history(b'{"epoch": [' + b"9" * 5000 + b"]}"), "history as JSON"),
    "training_bigint": (_training_text('"epoch": 1', '"epoch": ' + "9" * 5000),
                        "expected a JSON 'training'"),
    "epoch_negative": (_training(["epoch"], -1), "epoch >= 0"),
    "run_missing": (_training(["run"], {}), "order_seed"),
    "order_seed_huge": (_training(["run", "order_seed"], 2**70),
                        r"order_seed to be an int in \[0, 9223372036854775807\], got 1180"),
    "order_seed_other": (_training(["run", "order_seed"], 5), r"order_seed 0 \(the seed\), got 5"),
    "start_hidden_huge": (_training(["run", "start_hidden"], [20001]),
                          r"starting hidden widths \[6\] \(the history's first\), got \[20001\]"),
    "stopped_text": (_training(["run", "stopped"], "yes"), "expected stopped true or false"),
    "model_weights_edited": (_heavier, "other weights"),
}  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory, isolated_cache):
    """A training checkpoint after one epoch of [64, 6, 10] on 96 digits."""
    from isoproof.data import load_digits

    data = load_digits().subset(96, 20)
    path = tmp_path_factory.mktemp("training") / "run.safetensors"
    model = ip.IsotropicMLP([64, 6, 10], dtype=torch.float64, generator=torch.Generator())
    ip.fit(model, data, epochs=1, seed=0, verbose=False, checkpoint=path)
    return path, data


def _resume_refused(path, data, forged, match, **kw):
    """fit(resume=forged, **kw) raises one line naming the file; model and optimiser
    unchanged."""
    model = ip.load(path)
    opt = torch.optim.AdamW(model.parameters(), lr=0.0)  # state, weights untouched
    model(data.x_train[:4].double()).sum().backward()
    opt.step()
    before = snapshot(model)
    state = {k: v.clone() for k, v in named_state(opt, model)[0].items()}
    groups = copy.deepcopy(
        [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups]
    )
    with pytest.raises(ip.CheckpointError, match=match) as info:
        ip.fit(model, data, epochs=2, seed=0, verbose=False, optimizer=opt, resume=forged, **kw)
    assert "\n" not in str(info.value) and str(forged) in str(info.value)
    assert_unchanged(model, before)
    after = named_state(opt, model)[0]
    assert after.keys() == state.keys() and all(torch.equal(after[k], state[k]) for k in state)
    assert [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups] == groups


@pytest.mark.parametrize("name", list(HOSTILE_TRAINING))
def test_hostile_training_checkpoint_changes_nothing(trained, tmp_path, name):
    """Each file has a valid SHA-256 (a forger recomputes it): the content checks refuse it."""
    path, data = trained
    edit, match = HOSTILE_TRAINING[name]
    forged = tmp_path / "forged.safetensors"
    forge_checkpoint(path, forged, edit)
    _resume_refused(path, data, forged, match)


def test_training_checkpoint_edits_without_the_digest(trained, tmp_path):
    """A flipped moment byte, or a deeply nested training entry, is refused before use."""
    path, data = trained
    raw = bytearray(path.read_bytes())
    raw[-3000] ^= 1  # inside the data section (moments and generator states)
    flipped = tmp_path / "flipped.safetensors"
    flipped.write_bytes(bytes(raw))
    _resume_refused(path, data, flipped, "SHA-256")
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8 : 8 + n])
    header["__metadata__"]["training"] = "[" * 5000
    deep = _raw(tmp_path / "deep.safetensors", header, bytes(raw[8 + n :]))
    _resume_refused(path, data, deep, "expected a JSON 'training'")
    clean = path.read_bytes()  # unflipped data: the edit of the training entry is all that differs
    header = json.loads(clean[8 : 8 + n])
    training = json.loads(header["__metadata__"]["training"])
    training["epoch"] += 1  # valid JSON, a plausible value: only the digest can see the edit
    header["__metadata__"]["training"] = json.dumps(training)
    edited = _raw(tmp_path / "edited.safetensors", header, clean[8 + n :])
    _resume_refused(path, data, edited, "SHA-256")
    _resume_refused(path, data, ip.save(ip.load(path), tmp_path / "m.st"), "a training checkpoint")


def test_forged_start_of_a_width_schedule_is_refused(trained, tmp_path):
    """A WidthSchedule moves from the stored starting widths: forged to 20001 (and the history's
    first widths with them), the next resize would have grown a 10002-neuron layer."""
    _, data = trained
    schedule = ip.WidthSchedule((4,), epochs=4)
    path = tmp_path / "scheduled.safetensors"
    model = ip.IsotropicMLP([64, 6, 10], dtype=torch.float64, generator=torch.Generator())
    ip.fit(model, data, epochs=1, seed=0, verbose=False, checkpoint=path, width_schedule=schedule)

    def edit(tensors, training):
        history = json.loads(tensors["train/history"].numpy().tobytes())
        history["widths"][0] = [64, 20001, 10]
        text = json.dumps(history).encode()
        tensors["train/history"] = torch.frombuffer(bytearray(text), dtype=torch.uint8)
        training["run"]["start_hidden"] = [20001]

    forged = tmp_path / "forged.safetensors"
    forge_checkpoint(path, forged, edit)
    match = (
        r"hidden widths \[15002\] \(the width schedule from \[20001\] after epoch 1\), got \[6\]"
    )
    _resume_refused(path, data, forged, match, width_schedule=schedule)
