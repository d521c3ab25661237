"""The wheel installs ``isoproof.proofs`` and ``isoproof.exporters``, never top-level ``proofs`` or
``exporters`` (generic names other distributions use; ``pyproject.toml`` ``package-dir``)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_SOURCES = ("pyproject.toml", "README.md", "isoproof", "proofs", "exporters")


@pytest.mark.slow  # ~2 s of CPU, up to a minute of wall time on a shared machine
def test_wheel_installs_the_subpackages_under_isoproof(tmp_path: Path) -> None:
    src = tmp_path / "src"  # a copy: the build writes build/ and *.egg-info next to its sources
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in _SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=ignore)
        else:
            src.mkdir(exist_ok=True)
            shutil.copy2(path, src / name)
    out = tmp_path / "dist"
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    done = subprocess.run(
        [*cmd, "-w", str(out), str(src)], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (wheel,) = out.glob("isoproof-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "isoproof/proofs/__init__.py" in names
    assert "isoproof/exporters/__init__.py" in names
    assert "isoproof/proofs/__main__.py" in names
    tops = {n.split("/", 1)[0] for n in names}
    assert "proofs" not in tops and "exporters" not in tops, sorted(tops)
