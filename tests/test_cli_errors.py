"""Every CLI error is one line and exit status 2 (issue 16, item 14), and the CLI starts fast.

Each test runs the real command line: ``main(argv)`` in this process, or ``python -m isoproof`` in
a fresh one where the process matters (imports, broken pipes, terminals).
"""

from __future__ import annotations

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


def _python(code_or_args: list[str], **kw) -> subprocess.CompletedProcess:
    """Run this checkout's Python (``PYTHONPATH`` = the checkout) with ``code_or_args``."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONWARNINGS="ignore")
    env.pop("ISOPROOF_DEBUG", None)
    if "stdout" not in kw:
        kw.setdefault("capture_output", True)
    return subprocess.run(
        [sys.executable, *code_or_args], env=env, text=True, timeout=120, check=False, **kw
    )


def _one_line_error(capsys, needle: str) -> str:
    """The captured stderr: exactly one line, naming ``needle``."""
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert needle in err, err
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
