"""One rank of the 2-process gloo run behind tests/test_distributed.py (launched by torchrun).

Every scenario writes what it observed to ``OUT`` (safetensors and JSON per rank); the test
process compares the ranks with each other and with a single-process reference.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors.torch import save_file
from torch.nn.parallel import DistributedDataParallel as DDP

import isoproof as ip
from isoproof import distributed as D
from isoproof.data import load_digits
from isoproof.ops._surgery import AGREE

WIDTHS = [64, 20, 20, 10]
SEED = 0
ADAPT = ip.AdaptSchedule(buffer=5, threshold=0.9)
EPOCHS = 3
BATCH = 96  # global: 48 per process


def digits():
    return load_digits().subset(480, 200)


def model(seed: int = SEED) -> ip.IsotropicMLP:
    return ip.IsotropicMLP(
        WIDTHS, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)
    )


def state(m: torch.nn.Module, opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """Parameters, buffers and optimiser moments, keyed by name."""
    m = m.module if isinstance(m, DDP) else m
    out = {f"param.{k}": v.detach().clone().contiguous() for k, v in m.state_dict().items()}
    names = {id(p): n for n, p in m.named_parameters()}
    for p, s in opt.state.items():
        for k, v in s.items():
            if isinstance(v, torch.Tensor) and k != "step":
                out[f"moment.{names[id(p)]}.{k}"] = v.detach().clone().contiguous()
    return out


def caught(fn) -> str:
    try:
        fn()
    except Exception as e:
        return type(e).__name__
    return "none"


def fit_scenario(out: Path, r: int) -> None:
    """fit with AdaptSchedule under DDP; dump every rank's state after every epoch's resize;
    then the same run interrupted after epoch 2 and resumed from its checkpoint."""
    m = model()
    opt = torch.optim.AdamW(m.parameters(), lr=1e-2, weight_decay=1e-3)

    def dump(epoch, _model, _history):
        save_file(state(_model, opt), str(out / f"fit_rank{r}_epoch{epoch}.safetensors"))

    h = ip.fit(m, digits(), epochs=EPOCHS, batch_size=BATCH, adapt=ADAPT, optimizer=opt,
               seed=SEED, callbacks=[dump], verbose=False)  # fmt: skip
    (out / f"fit_rank{r}_history.json").write_text(json.dumps(h.to_dict()))
    D.save(m, out / "checkpoint.safetensors")  # rank 0 writes the model, every rank waits
    # interrupted after epoch 2 (rank 0 writes the training checkpoint), every rank loads it
    # and resumes to EPOCHS: the bits of the uninterrupted run above
    kw = {"batch_size": BATCH, "adapt": ADAPT, "seed": SEED, "verbose": False}
    first = model()
    opt1 = torch.optim.AdamW(first.parameters(), lr=1e-2, weight_decay=1e-3)
    ip.fit(first, digits(), epochs=2, optimizer=opt1, checkpoint=out / "train.safetensors", **kw)
    resumed = ip.load(out / "train.safetensors")
    opt2 = torch.optim.AdamW(resumed.parameters(), lr=1e-2, weight_decay=1e-3)
    h2 = ip.fit(resumed, digits(), epochs=EPOCHS, optimizer=opt2,
                resume=out / "train.safetensors", **kw)  # fmt: skip
    save_file(state(resumed, opt2), str(out / f"resumed_rank{r}.safetensors"))
    (out / f"resumed_rank{r}_history.json").write_text(json.dumps(h2.to_dict(timings=False)))


def flip_sign_on_rank1(compute):
    """Negative control: every rank computes its own SVD, rank 1 flips a singular vector."""
    out = compute()
    if dist.get_rank() == 1 and len(out) == 3:  # an SVD (not a random draw)
        R, S, Vh = out
        return torch.cat([-R[:, :1], R[:, 1:]], dim=1), S, Vh
    return out


def negative_controls(out: Path, r: int) -> dict[str, str]:
    seen = {}
    x = torch.randn(16, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    # 1. each rank its own SVD, rank-dependent sign: the check after the change fails
    net = D.wrap(model())
    opt = torch.optim.AdamW(net.parameters(), lr=1e-2)
    net(x).square().mean().backward()
    opt.step()

    def own_svd():
        with D.synchronised(net, opt) as m:
            token = AGREE.set(flip_sign_on_rank1)
            try:
                ip.adapt(m, buffer=3, threshold=0.9, optimizer=opt)
            finally:
                AGREE.reset(token)

    seen["own_svd_sign_flip"] = caught(own_svd)
    # 2. the stale wrapper: grow under a raw DDP, keep training through the old wrapper
    m = model()
    raw = DDP(m)
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    with D.synchronised(m, opt):
        ip.grow(m, 0, 2, init_scale=0.5, generator=torch.Generator().manual_seed(2), optimizer=opt)
    xr = x + r  # different data per rank, as in training
    raw(xr).square().mean().backward()  # the new parameters' gradients are not all-reduced
    opt.step()
    seen["stale_wrapper_training"] = caught(lambda: D.check_replicas(m, opt))
    # 3. the same step through the rebuilt wrapper keeps them identical
    m = model()
    net = D.wrap(m)
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    old = net
    net, _ = D.synchronise(net, ip.grow, 0, 2, init_scale=0.5, optimizer=opt)
    seen["old_wrapper_forward"] = caught(lambda: old(x))
    net(xr).square().mean().backward()
    opt.step()
    seen["rebuilt_wrapper_training"] = caught(lambda: D.check_replicas(m, opt))
    # 4. structural operations called directly on a wrapper or on a wrapped model
    seen["grow_on_wrapper"] = caught(lambda: ip.grow(net, 0))
    seen["grow_on_wrapped_model"] = caught(lambda: ip.grow(m, 0))
    return seen


def every_operation(out: Path, r: int) -> None:
    """Each structural operation through synchronise on a DDP-wrapped model (after a step with
    rank-dependent data, so the moments are non-trivial); dump each rank's state after each."""
    m = model(seed=3)
    net = D.wrap(m)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-2)
    x = torch.randn(32, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(4 + r))
    net(x).square().mean().backward()
    opt.step()
    Q = torch.linalg.qr(torch.randn(22, 22, dtype=torch.float64,
                                    generator=torch.Generator().manual_seed(5)))[0]  # fmt: skip
    ops = [
        ("grow", ip.grow, (0, 2), {"init_scale": 0.3}),
        ("rotate", ip.rotate, (0, Q), {}),
        ("prune", ip.prune, (1, 2), {}),
        ("prune_dead", ip.prune_dead, (), {}),
        ("prune_below", ip.prune_below, (0.5,), {}),
        ("sparsify", ip.sparsify, (), {}),
        ("adapt", ip.adapt, (), {"buffer": 2, "threshold": 0.9}),
    ]
    for name, op, args, kwargs in ops:
        net, receipt = D.synchronise(net, op, *args, optimizer=opt, **kwargs)
        save_file(state(net, opt), str(out / f"op_{name}_rank{r}.safetensors"))
        (out / f"op_{name}_rank{r}.txt").write_text(str(receipt))


def main() -> None:
    out = Path(sys.argv[1])
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    r = dist.get_rank()
    torch.manual_seed(100 + r)  # the global RNG differs per rank, as it often does in practice
    fit_scenario(out, r)
    every_operation(out, r)
    seen = negative_controls(out, r)
    (out / f"controls_rank{r}.json").write_text(json.dumps(seen))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
