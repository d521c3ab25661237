"""CLI: train, resize, spectra and experiment commands (in-process), and their one-line errors."""

from __future__ import annotations

import json

import pytest
import torch

import isoproof as ip
from isoproof.app.cli import main

pytestmark = pytest.mark.usefixtures("isolated_cache")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("cli")
    path = folder / "m.safetensors"
    args = ["train", "--data", "digits", "--widths", "64,12,12,10", "--epochs", "2"]
    args += ["--adapt", "3,0.99", "--history", str(folder / "h.json"), "--quiet", "-o", str(path)]
    assert main(args) == 0
    return path


def _status(args: list[str]) -> int:
    """main()'s return value, or the status of argparse's SystemExit (usage errors)."""
    try:
        return main(args)
    except SystemExit as e:
        return int(e.code or 0)


def _error(capsys, args: list[str]) -> str:
    assert _status(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_train_saves_model_and_history(trained):
    model = ip.load(trained)
    history = json.loads((trained.parent / "h.json").read_text())
    assert model.widths == history["widths"][-1] and len(history["epoch"]) == 3
    assert history["widths"][0] == [64, 12, 12, 10] != model.widths  # the buffer resized it
    assert history["settings"]["adapt"]["buffer"] == 3
    assert history["test_accuracy"][-1] > 0.3


def test_train_reports_bad_arguments(capsys, tmp_path):
    out = str(tmp_path / "x.safetensors")
    base = ["train", "--epochs", "1", "-o", out]
    err = _error(capsys, [*base, "--data", "digits", "--widths", "40,8,10"])
    assert "expected --widths to start with 64 and end with 10" in err
    err = _error(capsys, [*base, "--data", "cifar10:" + str(tmp_path), "--widths", "3072,8,10"])
    assert "data_batch_1" in err and "test_batch" in err
    assert "expected one of 'digits'" in _error(
        capsys, [*base, "--data", "mnist9", "--widths", "4,2"]
    )
    err = _error(capsys, [*base, "--data", "digits", "--widths", "64,8,10", "--adapt", "5"])
    assert "K,THETA" in err
    assert "comma-separated" in _error(capsys, [*base, "--data", "digits", "--widths", "a,b"])
    err = _error(capsys, [*base[:1], "--epochs", "0", "-o", out, "--data", "digits",
                          "--widths", "64,8,10"])  # fmt: skip
    assert "--epochs >= 1" in err
    assert not (tmp_path / "x.safetensors").exists()


def test_train_resumes_from_its_checkpoint(tmp_path, capsys):
    """3 epochs in one go == 2 epochs with --checkpoint, then the command again with --resume."""
    base = ["train", "--data", "digits", "--widths", "64,12,12,10", "--adapt", "3,0.99"]
    base += ["--quiet", "--batch-size", "96"]
    ck, f = str(tmp_path / "run.safetensors"), lambda name: str(tmp_path / name)
    assert main([*base, "--epochs", "3", "--history", f("a.json"), "-o", f("a.st")]) == 0
    assert main([*base, "--epochs", "2", "--checkpoint", ck, "-o", f("half.st")]) == 0
    assert ip.io.read_metadata(ck)["training"]["epoch"] == 2
    resume = [*base, "--epochs", "3", "--checkpoint", ck, "--resume"]
    assert main([*resume, "--history", f("b.json"), "-o", f("b.st")]) == 0
    a, b = ip.load(f("a.st")).state_dict(), ip.load(f("b.st")).state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k].view(-1).view(torch.uint8), b[k].view(-1).view(torch.uint8))
               for k in a)  # fmt: skip
    ha, hb = (json.loads((tmp_path / n).read_text()) for n in ("a.json", "b.json"))
    for key in ip.History.TIMINGS:
        ha.pop(key), hb.pop(key)
    assert ha == hb and len(ha["epoch"]) == 4
    capsys.readouterr()
    assert main(["info", ck]) == 0
    assert "training checkpoint: epoch 3, optimiser 'AdamW'" in capsys.readouterr().out
    err = _error(capsys, [*base, "--epochs", "3", "--resume", "-o", f("c.st")])
    assert "expected --checkpoint PATH with --resume" in err
    err = _error(capsys, [*base, "--epochs", "3", "--checkpoint", ck, "-o", ck])
    assert "other than the -o file" in err
    err = _error(capsys, [*resume[:-3], "--checkpoint", f("nope.st"), "--resume", "-o", f("c.st")])
    assert "no such file" in err
    err = _error(capsys, [*resume, "--lr", "0.5", "-o", f("c.st")])
    assert "setting lr=0.001, got lr=0.5" in err
    assert not (tmp_path / "c.st").exists()


@pytest.fixture(scope="module")
def run_checkpoint(tmp_path_factory: pytest.TempPathFactory):
    """A training checkpoint after one epoch, and the arguments of the command that wrote it."""
    folder = tmp_path_factory.mktemp("cli-checkpoint")
    base = ["train", "--data", "digits", "--widths", "64,8,10", "--epochs", "1", "--quiet"]
    base += ["-o", str(folder / "m.safetensors"), "--checkpoint"]
    assert main([*base, str(folder / "run.safetensors")]) == 0
    return folder / "run.safetensors", base


def test_train_refuses_to_start_over_an_existing_checkpoint(run_checkpoint, tmp_path, capsys):
    """Without --resume an existing --checkpoint is kept (--force starts the run again)."""
    ck, base = run_checkpoint
    copy = tmp_path / "run.safetensors"
    copy.write_bytes(ck.read_bytes())
    err = _error(capsys, [*base, str(copy)])
    assert f"expected a new --checkpoint file (or --resume, or --force), got {str(copy)!r}" in err
    assert copy.read_bytes() == ck.read_bytes()
    assert main([*base, str(copy), "--force"]) == 0


def test_train_resume_checks_the_checkpoint_before_the_data(
    run_checkpoint, tmp_path, capsys, monkeypatch
):
    """A damaged or model-only --checkpoint is refused before the data set loads, and a forged
    optimiser state (capturable=True: an AssertionError mid-step before) is one line, exit 2."""
    from conftest import forge_checkpoint

    import isoproof.data

    ck, base = run_checkpoint
    forged = tmp_path / "capturable.safetensors"
    group = lambda t, training: training["optimizer"]["param_groups"][0]  # noqa: E731
    forge_checkpoint(ck, forged, lambda t, training: group(t, training).update(capturable=True))
    err = _error(capsys, [*base, str(forged), "--resume", "--epochs", "2"])
    assert "expected capturable=False in group 0 (the current optimiser's), got True" in err

    def no_data(*args, **kwargs):
        raise AssertionError("the data set was loaded before the checkpoint was checked")

    monkeypatch.setattr(isoproof.data, "load_dataset", no_data)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x10" + b"\0" * 7 + b"not json at all!")
    assert "not a readable safetensors file" in _error(capsys, [*base, str(garbage), "--resume"])
    model_file = ip.save(ip.load(ck), tmp_path / "model.safetensors")
    err = _error(capsys, [*base, str(model_file), "--resume"])
    assert "expected a training checkpoint" in err


def test_train_refuses_a_seed_torch_cannot_take(tmp_path, capsys):
    args = ["train", "--data", "digits", "--widths", "64,8,10", "--epochs", "1", "--quiet"]
    args += ["-o", str(tmp_path / "m.safetensors"), "--seed", "99999999999999999999999"]
    err = _error(capsys, args)
    assert "expected --seed to be an int in [0, 9223372036854775807], got 9999999999" in err
    assert "Overflow" not in err and not list(tmp_path.iterdir())


def test_train_refuses_a_history_file_that_is_the_model_file(tmp_path, capsys):
    """``-o x.json --history x.json``: the history would overwrite the saved model."""
    same = tmp_path / "x.json"
    args = ["train", "--data", "digits", "--widths", "64,8,10", "--epochs", "1", "--quiet"]
    err = _error(capsys, [*args, "-o", str(same), "--history", str(same)])
    assert "expected a --history path other than the -o file" in err
    assert not list(tmp_path.iterdir())  # refused before training


def test_resize_operations(trained, tmp_path, capsys):
    before = ip.load(trained)
    out = tmp_path / "g.safetensors"
    assert main(["resize", str(trained), "--grow", "1:2", "-o", str(out)]) == 0
    assert ip.load(out).widths[2] == before.widths[2] + 2
    assert main(["resize", str(trained), "--sparsify", "--data", "digits", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "sparsify" in text and "test accuracy (digits)" in text
    assert ip.load(out).diagonal_layers == [1]
    assert main(["resize", str(trained), "--prune-below", "0.99", "-o", str(out)]) == 0
    pruned = ip.load(out)
    assert sum(pruned.widths) < sum(before.widths)


def test_resize_reports_bad_arguments(trained, tmp_path, capsys):
    out = str(tmp_path / "r.safetensors")
    assert "LAYER:N" in _error(capsys, ["resize", str(trained), "--grow", "x", "-o", out])
    assert "expected layer in" in _error(
        capsys, ["resize", str(trained), "--grow", "9:1", "-o", out]
    )
    assert "not found" in _error(capsys, ["resize", str(tmp_path / "no"), "--sparsify", "-o", out])
    assert "one of the arguments" in _error(capsys, ["resize", str(trained), "-o", out])
    assert "would remove all" in _error(
        capsys, ["resize", str(trained), "--prune-below", "100", "-o", out]
    )


def test_spectra_writes_png(trained, tmp_path, capsys):
    png = tmp_path / "s.png"
    assert main(["spectra", str(trained), "--threshold", "0.99", "-o", str(png)]) == 0
    assert png.read_bytes()[:4] == b"\x89PNG"
    out = capsys.readouterr().out
    assert out.count("map ") == 3 and "<= 0.99" in out


def test_experiment_command(tmp_path, capsys):
    assert main(["experiment", "spectra", "--quick", "--quiet", "--out", str(tmp_path)]) == 0
    assert {p.name for p in tmp_path.iterdir()} == {"spectra.md", "spectra.json", "spectra.png"}
    assert "invalid choice" in _error(capsys, ["experiment", "nope"])
