"""Synchronised structural changes under DistributedDataParallel: 2 real gloo processes.

One ``torchrun --standalone --nproc-per-node 2`` run of ``tests/_distributed_worker.py`` (fit
with AdaptSchedule, the same fit interrupted and resumed from its checkpoint, every structural
operation through ``synchronise``, the negative controls) writes each rank's parameters and
optimiser moments after every structural change; the tests compare the ranks bit for bit, and
against a single-process run on the same global batches with the same changes.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch.utils.data.distributed import DistributedSampler

import isoproof as ip
from isoproof import distributed as D

sys.path.insert(0, str(Path(__file__).parent))
import _distributed_worker as W

pytestmark = pytest.mark.usefixtures("isolated_cache")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ddp")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    cmd += [str(Path(W.__file__)), str(out)]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-4000:]
    return out


def ranks(run: Path, name: str) -> tuple[dict, dict]:
    return load_file(run / name.format(r=0)), load_file(run / name.format(r=1))


def bits(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(-1).view(torch.int64)  # NaN == NaN, -0.0 != 0.0


def assert_bit_identical(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype == torch.float64, k
        assert torch.equal(bits(a[k]), bits(b[k])), k


def reference_fit() -> list[dict]:
    """One process, the same global batches (both ranks' shards of every step, as the
    DistributedSampler deals them) and the same AdaptSchedule; state after every epoch."""
    data, m = W.digits(), W.model()
    opt = torch.optim.AdamW(m.parameters(), lr=1e-2, weight_decay=1e-3)
    neurons = torch.Generator().manual_seed(W.SEED + 1)  # fit's seeded generator
    x, y = data.x_train.to(torch.float64), data.y_train
    states, per_rank = [], W.BATCH // 2
    for epoch in range(1, W.EPOCHS + 1):
        shards = []
        for r in range(2):
            sampler = DistributedSampler(range(len(x)), num_replicas=2, rank=r, seed=W.SEED)
            sampler.set_epoch(epoch)
            shards.append(torch.tensor(list(sampler)))
        for j in range(math.ceil(len(shards[0]) / per_rank)):
            idx = torch.cat([s[j * per_rank : (j + 1) * per_rank] for s in shards])
            loss = F.cross_entropy(m(x[idx]), y[idx]) + m.penalty()
            opt.zero_grad()
            loss.backward()
            opt.step()
        W.ADAPT(m, epoch, opt, neurons)
        states.append(W.state(m, opt))
    return states


# ----------------------------------------------------------------------- fit under DDP
def test_fit_ranks_are_bit_identical_after_every_resize(run):
    widths = json.loads((run / "fit_rank0_history.json").read_text())["widths"]
    pairs = itertools.pairwise(widths)
    steps = [b - a for w0, w1 in pairs for a, b in zip(w0, w1, strict=True)]
    assert min(steps) < 0 < max(steps), widths  # the run both grew and pruned a layer
    for epoch in range(1, W.EPOCHS + 1):
        assert_bit_identical(*ranks(run, f"fit_rank{{r}}_epoch{epoch}.safetensors"))


def test_fit_equals_one_process_on_the_same_global_batches(run):
    for epoch, ref in enumerate(reference_fit(), start=1):
        got = load_file(run / f"fit_rank0_epoch{epoch}.safetensors")
        assert got.keys() == ref.keys(), epoch
        for k in ref:
            assert got[k].shape == ref[k].shape, (epoch, k)
            diff = (got[k] - ref[k]).nan_to_num(0.0).abs().max()  # gain_means: NaN (psi mode)
            assert float(diff) <= 1e-10, (epoch, k)


def test_history_is_identical_on_every_rank(run):
    h0, h1 = (json.loads((run / f"fit_rank{r}_history.json").read_text()) for r in range(2))
    assert h0 == h1 and h0["settings"]["processes"] == 2 and len(h0["epoch"]) == W.EPOCHS + 1


def test_checkpoint_written_by_rank0_resumes_identically(run):
    """fit(epochs=2, checkpoint) under DDP, every rank loading the file rank 0 wrote, then
    fit(epochs=3, resume): the uninterrupted run's parameters, moments and history, bit for bit
    on both ranks."""
    for r in range(2):
        resumed = load_file(run / f"resumed_rank{r}.safetensors")
        assert_bit_identical(resumed, load_file(run / f"fit_rank{r}_epoch{W.EPOCHS}.safetensors"))
    whole = json.loads((run / "fit_rank0_history.json").read_text())
    whole = {k: v for k, v in whole.items() if k not in ip.History.TIMINGS}
    for r in range(2):
        assert json.loads((run / f"resumed_rank{r}_history.json").read_text()) == whole
    last = load_file(run / f"fit_rank0_epoch{W.EPOCHS}.safetensors")
    saved = ip.load(run / "checkpoint.safetensors")
    for k, v in saved.state_dict().items():
        assert torch.equal(bits(v.to(torch.float64)), bits(last[f"param.{k}"])), k


# ----------------------------------------------------------------------- every operation
OPS = ["grow", "rotate", "prune", "prune_dead", "prune_below", "sparsify", "adapt"]


@pytest.mark.parametrize("name", OPS)
def test_every_operation_is_bit_identical_across_ranks(run, name):
    a, b = ranks(run, f"op_{name}_rank{{r}}.safetensors")
    assert_bit_identical(a, b)
    assert (run / f"op_{name}_rank0.txt").read_text() == (run / f"op_{name}_rank1.txt").read_text()


# ----------------------------------------------------------------------- negative controls
def test_controls(run):
    c0, c1 = (json.loads((run / f"controls_rank{r}.json").read_text()) for r in range(2))
    assert c0 == c1  # every rank raises, none waits
    assert c0 == {
        "own_svd_sign_flip": "ReplicaMismatchError",
        "stale_wrapper_training": "ReplicaMismatchError",
        "old_wrapper_forward": "StaleWrapperError",
        "rebuilt_wrapper_training": "none",
        "grow_on_wrapper": "UnsynchronisedError",
        "grow_on_wrapped_model": "UnsynchronisedError",
    }


# ----------------------------------------------------------------------- one process
def test_one_process_runs_the_operation_as_it_is():
    a, b = W.model(), W.model()
    opt = torch.optim.AdamW(a.parameters())
    g = [torch.Generator().manual_seed(0) for _ in range(2)]
    kw = {"buffer": 2, "threshold": 0.9}
    net, receipt = D.synchronise(a, ip.adapt, generator=g[0], optimizer=opt, **kw)
    ref = ip.adapt(b, generator=g[1], **kw)
    assert net is a and a.widths == b.widths and str(receipt) == str(ref)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


def test_fingerprint_sees_one_bit():
    m = W.model()
    base = D.fingerprint(m)
    other = copy.deepcopy(m)
    with torch.no_grad():
        w = other.linears[1].weight
        w.view(-1).view(torch.int64)[7] ^= 1  # flip the lowest bit of one weight
    assert torch.equal(D.fingerprint(copy.deepcopy(m)), base)
    assert int(D.fingerprint(other)[1]) != int(base[1])
