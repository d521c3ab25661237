"""Atomic writes (issue 16, item 10, and the checkpoint-mode side effect): a write killed with
``kill -9`` leaves a temporary that the next write of the same path removes; final files get
the umask's mode."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from conftest import make_model

import isoproof as ip
from isoproof.files import atomic_path, atomic_write_text

_SLOW_WRITER = """
import sys, time
from isoproof.files import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    with open(tmp, "wb") as f:
        f.write(b"x" * 1_000_000)
        f.flush()
        print("writing", flush=True)
        time.sleep(60)
"""


def test_kill_9_mid_write_then_next_write_cleans_up(tmp_path):
    target = tmp_path / "big.bin"
    proc = subprocess.Popen(
        [sys.executable, "-c", _SLOW_WRITER, str(target)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "writing"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
        proc.stdout.close()
    leftovers = [p for p in tmp_path.iterdir() if p.name != "big.bin"]
    assert len(leftovers) == 1 and leftovers[0].stat().st_size == 1_000_000  # the partial file
    assert not target.exists()
    ip.save(make_model([3, 4, 2]), target)  # the next write of the same path
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.bin"]


def test_a_live_writers_temporary_is_kept(tmp_path):
    target = tmp_path / "f.txt"
    other = tmp_path / f".f.txt.{os.getppid()}.isoproof-tmp"  # a running process (our parent)
    other.write_text("in progress")
    atomic_write_text(target, "done")
    assert other.exists() and target.read_text() == "done"


def test_final_mode_follows_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        path = ip.save(make_model([3, 4, 2]), tmp_path / "m.safetensors")
        assert path.stat().st_mode & 0o777 == 0o644
        os.umask(0o077)
        private = atomic_write_text(tmp_path / "p.txt", "x")
        assert private.stat().st_mode & 0o777 == 0o600
        os.chmod(path, 0o640)  # replacing a file keeps its mode
        ip.save(make_model([3, 4, 2]), path)
        assert path.stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(old)


def test_failed_block_leaves_nothing(tmp_path):
    try:
        with atomic_path(tmp_path / "x.bin") as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert list(tmp_path.iterdir()) == []
