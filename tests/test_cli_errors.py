"""Every CLI error is one line and exit status 2 (issue 16, item 14), and the CLI starts fast.

Each test runs the real command line: ``main(argv)`` in this process, or ``python -m isoproof`` in
a fresh one where the process matters (imports, broken pipes, terminals).
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import make_model

import isoproof as ip
from isoproof.app.cli import main

ROOT = Path(__file__).resolve().parent.parent


def _permissions_enforced() -> bool:
    """Whether file modes bind this process (not root with CAP_DAC_OVERRIDE)."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        probe = Path(folder) / "probe"
        probe.write_text("x")
        probe.chmod(0)
        try:
            probe.read_text()
        except PermissionError:
            return True
        finally:
            probe.chmod(0o600)
    return False


PERMISSIONS_ENFORCED = _permissions_enforced()


def _python(code_or_args: list[str], **kw) -> subprocess.CompletedProcess:
    """Run this checkout's Python (``PYTHONPATH`` = the checkout) with ``code_or_args``."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONWARNINGS="ignore")
    env.pop("ISOPROOF_DEBUG", None)
    if "stdout" not in kw:
        kw.setdefault("capture_output", True)
    return subprocess.run(
        [sys.executable, *code_or_args], env=env, text=True, timeout=120, check=False, **kw
    )


def _one_line_error(capsys, *needles: str) -> str:
    """The captured stderr: exactly one line, containing every one of ``needles``."""
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert all(n in err for n in needles), err
    assert "internal error" not in err and "Traceback" not in err
    return err


# ----------------------------------------------------------------------- startup
def test_version_imports_neither_torch_nor_sympy():
    code = (
        "import sys, runpy; sys.argv = ['isoproof', '--version']\n"
        "try:\n    runpy.run_module('isoproof', run_name='__main__')\n"
        "except SystemExit as e:\n    assert e.code == 0, e.code\n"
        "heavy = sorted(m for m in ('torch', 'sympy', 'numpy', 'onnx') if m in sys.modules)\n"
        "print('heavy', heavy)\n"
    )
    done = _python(["-c", code])
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"isoproof {ip.__version__}", "heavy []"]


def test_lazy_package_still_exports_everything_and_loads_every_format(tmp_path):
    """A fresh process: the public names resolve, and load() knows the conv and collapsed
    formats before anything imported their modules."""
    conv = ip.IsotropicConvNet((1, 6, 6), [{"conv": 3, "k": 3}], 2, dtype=torch.float64)
    ip.save(conv, tmp_path / "conv.safetensors")
    collapsed, _ = ip.collapse(make_model([4, 6, 6, 3]))
    ip.save(collapsed, tmp_path / "collapsed.safetensors")
    code = (
        "import sys, isoproof as ip\n"
        "assert 'torch' not in sys.modules\n"
        f"c = ip.load({str(tmp_path / 'conv.safetensors')!r})\n"
        f"k = ip.load({str(tmp_path / 'collapsed.safetensors')!r})\n"
        "print(type(c).__name__, type(k).__name__)\n"
        "missing = [n for n in ip.__all__ if getattr(ip, n, None) is None]\n"
        "import isoproof.collapse, isoproof.stability\n"  # submodules named like functions
        "print(missing, callable(ip.collapse), callable(ip.stability), ip.IsotropicMLP.__name__)\n"
        "print(sorted(set(ip.__all__) - set(dir(ip))))\n"
    )
    done = _python(["-c", code])
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "IsotropicConvNet CollapsedMLP",
        "[] True True IsotropicMLP",
        "[]",
    ]


#: The submodules that were attributes of the package before it became lazy (and checkpoint).
SUBMODULES = ("activations", "checkpoint", "conv", "data", "diagonal", "distributed", "files",
              "io", "mlp", "network", "ngc", "ops", "optim", "psi", "radial", "receipt",
              "standard", "table", "testing", "train")  # fmt: skip


def test_lazy_package_keeps_its_submodules_as_attributes():
    """``import isoproof; isoproof.ops`` in a fresh process (an AttributeError once lazy), while
    the functions named like their modules stay functions."""
    code = (
        "import types, isoproof as ip\n"
        f"missing = [n for n in {SUBMODULES!r} if not isinstance(getattr(ip, n, None), "
        "types.ModuleType)]\n"
        "print(missing, callable(ip.collapse), callable(ip.stability), ip.ops.grow is ip.grow)\n"
    )
    done = _python(["-c", code])
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["[] True True True"]


# ----------------------------------------------------------------------- damaged ONNX files
@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A checkpoint and its ONNX export."""
    folder = tmp_path_factory.mktemp("exported")
    ckpt = ip.save(make_model([6, 8, 3], dtype=torch.float32), folder / "m.safetensors")
    assert main(["export", str(ckpt), "-o", str(folder / "m.onnx")]) == 0
    return ckpt, folder / "m.onnx"


def _damaged(kind: str, good: bytes) -> bytes:
    if kind == "garbage":
        return (
            torch.randint(0, 256, (100,), generator=torch.Generator().manual_seed(0))
            .to(torch.uint8)
            .numpy()
            .tobytes()
        )
    if kind == "truncated":
        return good[: len(good) // 2]
    if kind == "empty":
        return b""
    assert kind == "bad-utf8"  # parses, but an operator name is not text
    assert good.count(b"Tanh") >= 1
    return good.replace(b"Tanh", b"\xff\xfe\xfd\xfc")


@pytest.mark.parametrize("kind", ["garbage", "truncated", "empty", "bad-utf8"])
def test_damaged_onnx_is_one_line_exit_2(exported, tmp_path, capsys, kind):
    ckpt, good = exported
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(_damaged(kind, good.read_bytes()))
    capsys.readouterr()
    assert main(["verify", str(bad), str(ckpt), "--latency", "0"]) == 2
    _one_line_error(capsys, f"expected an ONNX file at {bad}, got")


# ----------------------------------------------------------------------- output into a closed pipe
@pytest.mark.parametrize(("command", "status"), [(["info", "{ckpt}"], 141), (["--help"], 0)])
def test_output_into_a_closed_pipe_is_quiet(exported, command, status):
    """``isoproof ... | head -1``: the reader goes away; no traceback, exit status 141 (as
    SIGPIPE; argparse itself drops the help text silently, exit 0)."""
    ckpt, _ = exported
    read_end, write_end = os.pipe()
    os.close(read_end)  # every write now fails with EPIPE (Python ignores SIGPIPE)
    try:
        args = [a.format(ckpt=ckpt) for a in command]
        done = _python(["-m", "isoproof", *args], stdout=write_end, stderr=subprocess.PIPE)
    finally:
        os.close(write_end)
    assert (done.returncode, done.stderr) == (status, "")


# ----------------------------------------------------------------------- output paths
def _no_work(monkeypatch):
    """Loading a checkpoint or a data set, or running a proof or experiment, fails loudly: the
    output checks must come first."""
    import isoproof.proofs.runner

    import isoproof.app.experiments as experiments
    import isoproof.data
    import isoproof.io

    def started(*args, **kwargs):
        raise RuntimeError("work started before the output was checked")

    for module, name in (
        (isoproof.io, "load"),
        (isoproof.data, "load_dataset"),
        (isoproof.proofs.runner, "run"),
        (experiments, "run_experiment"),
    ):
        monkeypatch.setattr(module, name, started)


def _commands(ckpt: Path, onnx_file: Path, out: str) -> dict[str, list[str]]:
    """Every command that writes a file, with ``out`` as its output (``{}`` = a suffix)."""
    train = ["train", "--data", "digits", "--widths", "64,8,10", "--epochs", "1"]
    return {
        "train": [*train, "-o", out.format(".safetensors")],
        "train --history": [*train, "-o", "never.safetensors", "--history", out.format(".json")],
        "resize": ["resize", str(ckpt), "--sparsify", "-o", out.format(".safetensors")],
        "export": ["export", str(ckpt), "-o", out.format(".onnx")],
        "collapse": ["collapse", str(ckpt), "-o", out.format(".onnx")],
        "ngc": ["ngc", str(ckpt), "--data", "digits", "-o", out.format(".onnx")],
        "spectra": ["spectra", str(ckpt), "-o", out.format(".png")],
        "verify --json": ["verify", str(onnx_file), str(ckpt), "--json", out.format(".json")],
        "prove --json": ["prove", "--json", out.format(".json")],
        "prove --junit": ["prove", "--junit", out.format(".xml")],
    }


COMMANDS = list(_commands(Path("m"), Path("o"), "x{}"))


@pytest.mark.parametrize("command", COMMANDS)
def test_a_directory_as_output_file_is_one_line(exported, tmp_path, capsys, monkeypatch, command):
    """``--junit .`` and the like: one line naming the flag, before any work (issue 16, 14)."""
    _no_work(monkeypatch)
    for suffix in (".safetensors", ".json", ".onnx", ".png", ".xml"):
        (tmp_path / f"dir{suffix}").mkdir()
    argv = _commands(*exported, str(tmp_path / "dir{}"))[command]
    assert main(argv) == 2
    _one_line_error(capsys, "expected a file path for ", ", got a directory")


@pytest.mark.parametrize("command", COMMANDS)
def test_an_output_under_a_file_is_refused_before_any_work(
    exported, tmp_path, capsys, monkeypatch, command
):
    """The output's folder cannot be created (a file is in the way): one line, nothing run."""
    _no_work(monkeypatch)
    (tmp_path / "plain").write_text("x")
    argv = _commands(*exported, str(tmp_path / "plain" / "sub" / "out{}"))[command]
    assert main(argv) == 2
    _one_line_error(
        capsys, "expected a writable folder for ", f"got {str(tmp_path / 'plain')!r} (a file)"
    )


@pytest.mark.skipif(not PERMISSIONS_ENFORCED, reason="this process (root) ignores file modes")
@pytest.mark.parametrize("command", COMMANDS)
def test_an_unwritable_output_folder_is_refused_before_any_work(
    exported, tmp_path, capsys, monkeypatch, command
):
    _no_work(monkeypatch)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        argv = _commands(*exported, str(locked / "out{}"))[command]
        assert main(argv) == 2
        _one_line_error(capsys, "expected a writable folder for ", "(permission denied)")
    finally:
        locked.chmod(0o755)


@pytest.mark.parametrize("command", ["experiment", "demo"])
def test_output_folders_are_checked_before_any_work(tmp_path, capsys, monkeypatch, command):
    import isoproof.app.demo as demo

    _no_work(monkeypatch)
    monkeypatch.setattr(demo, "run_demo", lambda *a, **k: 1 / 0)
    (tmp_path / "plain").write_text("x")
    argv = {"experiment": ["experiment", "invariance", "--quick"], "demo": ["demo"]}[command]
    assert main([*argv, "--out", str(tmp_path / "plain")]) == 2
    _one_line_error(
        capsys, f"expected a folder for --out, got the file {str(tmp_path / 'plain')!r}"
    )
    assert main([*argv, "--out", str(tmp_path / "plain" / "sub")]) == 2
    _one_line_error(
        capsys, f"expected a writable folder for --out, got {str(tmp_path / 'plain')!r} (a file)"
    )


# ----------------------------------------------------------------------- the data cache
@pytest.mark.parametrize("under", [False, True], ids=["file", "under-a-file"])
def test_cache_set_to_a_file_is_one_line(tmp_path, capsys, monkeypatch, under):
    plain = tmp_path / "plain"
    plain.write_text("x")
    monkeypatch.setenv("ISOPROOF_CACHE", str(plain / "sub" if under else plain))
    argv = ["train", "--data", "digits", "--widths", "64,8,10", "--epochs", "1"]
    assert main([*argv, "-o", str(tmp_path / "m.safetensors")]) == 2
    if under:
        _one_line_error(
            capsys, f"expected a folder for $ISOPROOF_CACHE, got {str(plain)!r} (a file)"
        )
    else:
        _one_line_error(
            capsys, f"expected a folder for $ISOPROOF_CACHE, got the file {str(plain)!r}"
        )
    assert not (tmp_path / "m.safetensors").exists()


# ----------------------------------------------------------------------- unreadable inputs
def _status(argv: list[str]) -> int:
    """``main(argv)``'s exit status, including argparse's ``SystemExit``."""
    try:
        return main(argv)
    except SystemExit as e:
        return int(e.code)


def test_missing_file_and_directory_are_told_apart(tmp_path, capsys):
    assert _status(["info", str(tmp_path / "nope.safetensors")]) == 2
    missing = str(tmp_path / "nope.safetensors")
    _one_line_error(capsys, f"expected an existing file, got {missing!r} (not found)")
    assert _status(["info", str(tmp_path)]) == 2
    _one_line_error(capsys, f"expected a file, got a directory {str(tmp_path)!r}")
    assert _status(["export", str(tmp_path), "-o", str(tmp_path / "m.onnx")]) == 2
    _one_line_error(capsys, "argument model: expected a file, got a directory")


@pytest.mark.parametrize("name", ["deep_header", "bigint_header", "bigint_config"])
def test_info_on_json_that_python_refuses_is_one_line(tmp_path, capsys, name):
    """A header nested 100 000 deep or holding a 5000-digit int (valid JSON that json.loads
    refuses with RecursionError / ValueError) is a one-line error, exit 2."""
    from test_hostile_checkpoint import evil_files

    path = evil_files(tmp_path)[name]
    capsys.readouterr()
    assert _status(["info", str(path)]) == 2
    _one_line_error(capsys, str(path))


@pytest.mark.skipif(not PERMISSIONS_ENFORCED, reason="this process (root) ignores file modes")
@pytest.mark.parametrize("where", ["file", "folder"])
def test_unreadable_file_is_permission_denied(exported, tmp_path, capsys, where):
    ckpt, _ = exported
    locked = tmp_path / "locked"
    locked.mkdir()
    target = locked / "m.safetensors"
    target.write_bytes(ckpt.read_bytes())
    (target if where == "file" else locked).chmod(0)
    try:
        assert _status(["info", str(target)]) == 2
        _one_line_error(
            capsys, f"expected a readable file, got {str(target)!r} (permission denied)"
        )
    finally:
        locked.chmod(0o755)
        target.chmod(0o644)


# ----------------------------------------------------------------------- progress on a terminal
class _Terminal(io.StringIO):
    """A stand-in for a terminal's stderr (``isatty()`` is true): a fake TTY, not a pty."""

    def isatty(self) -> bool:
        return True


def _stderr_of(monkeypatch, capsys, argv: list[str], terminal: bool) -> tuple[int, str, str]:
    """``main(argv)`` with stderr a (fake) terminal or a plain stream; (status, stderr, stdout)."""
    stream = _Terminal() if terminal else io.StringIO()
    capsys.readouterr()
    with monkeypatch.context() as m:
        m.setattr(sys, "stderr", stream)
        status = main(argv)
    return status, stream.getvalue(), capsys.readouterr().out


@pytest.mark.parametrize("command", ["prove", "export", "ngc"])
def test_long_commands_show_progress_on_a_terminal_only(
    exported, tmp_path, capsys, monkeypatch, isolated_cache, command
):
    ckpt, _ = exported
    if command == "ngc":
        ckpt = ip.save(make_model([64, 12, 12, 10], dtype=torch.float32), tmp_path / "d.st")
    argv, seen = {
        "prove": (["prove", "--only", "equivariance.any_n"], "equivariance.any_n"),
        "export": (["export", str(ckpt), "-o", str(tmp_path / "m.onnx"), "--verify"], "verify"),
        "ngc": (["ngc", str(ckpt), "--data", "digits", "-o", str(tmp_path / "n.onnx")], "export"),
    }[command]
    status, err, out = _stderr_of(monkeypatch, capsys, [*argv, "--force"], terminal=True)
    assert status == 0
    assert f"{command}" in err and seen in err and "\x1b[" in err  # a drawn bar
    assert "\x1b[" not in out  # the report on stdout stays plain
    status, err, out = _stderr_of(monkeypatch, capsys, [*argv, "--force"], terminal=False)
    assert (status, err) == (0, "")
    assert out


def test_train_draws_its_epochs_on_a_terminal_and_prints_lines_otherwise(
    tmp_path, capsys, monkeypatch, isolated_cache
):
    argv = ["train", "--data", "digits", "--widths", "64,8,10", "--epochs", "2", "--force"]
    argv += ["-o", str(tmp_path / "m.safetensors")]
    status, err, _ = _stderr_of(monkeypatch, capsys, argv, terminal=True)
    assert status == 0 and "epoch 2/2" in err and "\x1b[" in err
    status, err, _ = _stderr_of(monkeypatch, capsys, argv, terminal=False)
    assert status == 0 and "\x1b[" not in err
    assert [line[:10] for line in err.splitlines()] == ["epoch 1/2:", "epoch 2/2:"]
