"""Overhead of one synchronised ``adapt`` with 2 gloo processes vs the same call in one process.

Issue 14: ``isoproof.distributed.synchronise(wrapper, isoproof.adapt, ...)`` on
``[784, 1024 x 4, 10]`` (float32, orthogonal init, so the call left-diagonalises and grows every
hidden layer: 4 SVDs of 1024-wide maps, broadcast from rank 0) against ``isoproof.adapt`` on the
same model in one process. One ``torchrun --standalone --nproc-per-node 2`` launch measures both,
in interleaved rounds: rank 0 times the plain call while rank 1 waits at a barrier, then both
time the synchronised call (replica checks before and after, rank 0's SVDs broadcast, the
wrapper rebuilt). One torch thread per process. Each call works on a fresh copy of the model.
"""

from __future__ import annotations

import copy
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import isoproof as ip

from ._common import ROOT, record

WIDTHS = [784, 1024, 1024, 1024, 1024, 10]
REPEATS = 3
SETTINGS = {"buffer": 5, "threshold": 0.95}


def _worker(out: Path) -> None:
    import torch.distributed as dist

    from isoproof import distributed as D

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    model = ip.IsotropicMLP(WIDTHS, generator=torch.Generator().manual_seed(0))
    plain, synced = [], []
    for round_ in range(REPEATS + 1):  # round 0 warms up LAPACK and the process group
        dist.barrier()
        if dist.get_rank() == 0:
            m = copy.deepcopy(model)
            t0 = time.perf_counter()
            ip.adapt(m, **SETTINGS, generator=torch.Generator().manual_seed(1))
            plain.append(time.perf_counter() - t0)
        dist.barrier()
        net = D.wrap(copy.deepcopy(model))
        dist.barrier()
        t0 = time.perf_counter()
        D.synchronise(net, ip.adapt, **SETTINGS, generator=torch.Generator().manual_seed(1))
        synced.append(time.perf_counter() - t0)
        del round_
    if dist.get_rank() == 0:
        out.write_text(json.dumps({"plain_s": plain[1:], "synchronised_s": synced[1:]}))
    dist.destroy_process_group()


def main(argv: list[str] | None = None) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "times.json"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
        cmd += ["--nproc-per-node", "2", "-m", "benchmarks.bench_distributed", "--worker", str(out)]
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
        subprocess.run(cmd, cwd=ROOT, env=env, check=True)
        times = json.loads(out.read_text())
    plain = statistics.median(times["plain_s"])
    synced = statistics.median(times["synchronised_s"])
    ratio = synced / plain
    md = (
        f"## Synchronised adapt under DDP ({WIDTHS}, float32, 2 gloo processes)\n\n"
        f"`isoproof.adapt(buffer=5, threshold=0.95)` in one process: {plain * 1e3:.0f} ms; "
        f"`isoproof.distributed.synchronise(wrapper, isoproof.adapt, ...)` with 2 processes: "
        f"{synced * 1e3:.0f} ms (medians of {REPEATS} interleaved rounds in one run, one torch "
        f"thread per process): **{ratio:.2f}x**. The synchronised call adds two replica checks, "
        "the broadcast of rank 0's SVDs and the rebuilt wrapper; the 2 processes share the 2 "
        "cores of a machine that other jobs were also using, so this is one run's ratio."
    )
    record(
        "distributed",
        md,
        {
            "widths": WIDTHS,
            "repeats": REPEATS,
            **times,
            "plain_median_s": plain,
            "synchronised_median_s": synced,
            "ratio": ratio,
        },
    )
    print(md)
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        _worker(Path(sys.argv[2]))
    else:
        sys.exit(main(sys.argv[1:]))
