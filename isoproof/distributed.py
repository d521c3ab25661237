"""Structural operations on a model replicated by ``DistributedDataParallel`` (any backend).

DDP keeps replicas identical by giving every process the same gradient, so each applies the
same optimiser step. A structural operation breaks that twice over: the wrapper only hooks the
parameters that existed when it was built (after a resize it silently stops synchronising), and
a factorisation or a random draw need not agree across processes (SVD signs and orderings are
not fixed), so every rank computing its own change of basis can desynchronise the replicas.

:func:`synchronise` runs one operation so that neither happens:

1. the module buffers are broadcast from rank 0 (DDP's convention: rank 0's buffers hold), and
   a checksum of the parameters and optimiser moments is all-gathered (:func:`check_replicas`);
2. the operation runs on every rank through the one engine (:class:`isoproof.ops._surgery.
   Surgery`); its only inputs replicas could disagree on, the SVDs (``Surgery.svd``) and the new
   neurons' random outgoing columns, go through :func:`isoproof.ops._surgery.agreed`, which here
   computes on rank 0 and broadcasts; everything else is the same arithmetic on identical inputs
   (as DDP's own optimiser step is), so every rank applies the identical change;
3. the checksum is compared again and :class:`ReplicaMismatchError` raised on every rank if any
   replica differs;
4. when the operation replaced parameters, the wrapper is rebuilt over the new ones and the old
   one is disabled: calling it raises :class:`StaleWrapperError`.

Any operation built on ``Surgery`` (``adapt``, ``grow``, ``prune``, ``prune_below``,
``prune_dead``, ``sparsify``, ``rotate``, the diagonalisations, the task neurons, and convolution
equivalents built on the same engine) is synchronised this way without code of its own. A direct
call on a wrapper, or on a model made by :func:`wrap`, raises :class:`UnsynchronisedError`.

In one process (no process group, or a world of one) nothing is communicated: the functions
run the operation as it is.

Example (one process; under ``torchrun`` the same lines run on every rank)::

    >>> model = IsotropicMLP([4, 6, 6, 3], dtype=torch.float64)
    >>> opt = torch.optim.AdamW(model.parameters())
    >>> x = torch.randn(8, 4, dtype=torch.float64)
    >>> net, receipt = synchronise(model, adapt, buffer=2, threshold=0.5, optimizer=opt, probe=x)
    >>> net is model, model.widths, receipt.max_abs_change < 1e-12  # growth only: exact
    (True, [4, 6, 8, 3], True)
"""

from __future__ import annotations

import json
import os
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from .exceptions import IsoproofError, ReplicaMismatchError, StaleWrapperError
from .ops._surgery import AGREE, REPLICATED, Tensors
from .receipt import Receipt

__all__ = [
    "any_process",
    "broadcast_json",
    "check_replicas",
    "fingerprint",
    "init_from_env",
    "is_distributed",
    "rank",
    "rewrap",
    "save",
    "sum_over_processes",
    "synchronise",
    "synchronised",
    "world_size",
    "wrap",
    "write_on_rank0",
]

_KWARGS: weakref.WeakKeyDictionary[DDP, dict[str, Any]] = weakref.WeakKeyDictionary()
_WRAPPER: weakref.WeakKeyDictionary[nn.Module, weakref.ref[DDP]] = weakref.WeakKeyDictionary()
_HEADER = 64  # int64 slots describing the tensors rank 0 broadcasts
_DTYPES = (torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.int64)
_INTS = {8: torch.int64, 4: torch.int32, 2: torch.int16, 1: torch.uint8}


# ----------------------------------------------------------------------- the process group
def is_distributed() -> bool:
    """True when a process group with more than one process is initialised."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    """Number of processes (1 without a process group)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def init_from_env() -> bool:
    """Initialise the default process group when launched by ``torchrun`` (``WORLD_SIZE > 1`` in
    the environment); the backend is PyTorch's default for the devices present (gloo on CPU,
    nccl on GPUs). Returns whether this process is now part of a group of several."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group()
    return is_distributed()


def _device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    raise IsoproofError(f"expected a model with parameters, got {type(model).__name__}")


# ----------------------------------------------------------------------- rank 0 computes
def _encode(out: Tensors) -> list[int]:
    header = [len(out)]
    for t in out:
        if t.dtype not in _DTYPES:
            raise IsoproofError(f"expected tensors of dtypes {_DTYPES}, got {t.dtype}")
        header += [_DTYPES.index(t.dtype), t.dim(), *t.shape]
    if len(header) > _HEADER:
        raise IsoproofError(f"expected at most {_HEADER} header slots, got {len(header)}")
    return header + [0] * (_HEADER - len(header))


def _decode(header: list[int]) -> list[tuple[torch.dtype, list[int]]]:
    specs, pos = [], 1
    for _ in range(header[0]):
        dtype, ndim = _DTYPES[header[pos]], header[pos + 1]
        specs.append((dtype, header[pos + 2 : pos + 2 + ndim]))
        pos += 2 + ndim
    return specs


def _from_rank0(compute: Callable[[], Tensors], device: torch.device) -> Tensors:
    """The :func:`~isoproof.ops._surgery.agreed` hook: rank 0 runs ``compute`` and broadcasts the
    result (one header, one float64 payload); the other ranks receive it without computing.
    If rank 0 fails, every rank raises (nobody waits for a broadcast that never comes)."""
    if not is_distributed():
        return compute()
    header = torch.zeros(_HEADER, dtype=torch.int64, device=device)
    out: Tensors = ()
    if dist.get_rank() == 0:
        try:
            out = tuple(compute())
            header.copy_(torch.tensor(_encode(out), dtype=torch.int64))
        except BaseException:
            header[0] = -1
            dist.broadcast(header, 0)
            raise
    dist.broadcast(header, 0)
    values = header.tolist()
    if values[0] < 0:
        raise IsoproofError("expected rank 0 to compute the change of basis, got an error there")
    specs = _decode(values)
    sizes = [int(torch.Size(shape).numel()) for _, shape in specs]
    if dist.get_rank() == 0:
        payload = torch.cat([t.detach().reshape(-1).to(device, torch.float64) for t in out])
    else:
        payload = torch.empty(sum(sizes), dtype=torch.float64, device=device)
    dist.broadcast(payload, 0)
    parts = payload.split(sizes)
    return tuple(p.reshape(shape).to(dtype) for p, (dtype, shape) in zip(parts, specs, strict=True))


# ----------------------------------------------------------------------- the cross-rank check
def _hash(tensors: list[torch.Tensor], device: torch.device) -> torch.Tensor:
    """Order-dependent int64 sum of every element's bits times an odd position weight: two
    tensor lists differing in one element (one bit) always hash differently (wrapping
    arithmetic modulo 2^64)."""
    total = torch.zeros((), dtype=torch.int64, device=device)
    offset = 0
    for t in tensors:
        flat = t.detach().contiguous().reshape(-1)
        bits = flat.view(_INTS[flat.element_size()]).to(device, torch.int64)
        weight = torch.arange(offset, offset + bits.numel(), dtype=torch.int64, device=device)
        total += (bits * (2 * weight + 1)).sum()
        offset += bits.numel() + 1
    return total


def fingerprint(model: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> torch.Tensor:
    """``[shapes, state, moments]`` as int64: a hash of the parameter and buffer shapes, of their
    bits, and of the optimiser state's tensors (moments and steps) in parameter order."""
    model = model.module if isinstance(model, DDP) else model
    device = _device(model)
    state = list(model.state_dict().values())
    shapes = [torch.tensor([*t.shape, -1], dtype=torch.int64) for t in state]
    moments: list[torch.Tensor] = []
    if optimizer is not None:
        for group in optimizer.param_groups:
            for p in group["params"]:
                entry = optimizer.state.get(p, {})
                moments += [entry[k] for k in sorted(entry) if isinstance(entry[k], torch.Tensor)]
    return torch.stack([_hash(shapes, device), _hash(state, device), _hash(moments, device)])


def check_replicas(
    model: nn.Module, optimizer: torch.optim.Optimizer | None = None, *, when: str = ""
) -> None:
    """All-gather :func:`fingerprint` and raise :class:`ReplicaMismatchError` on every rank if any
    rank's parameters, buffers or optimiser moments differ from rank 0's (one ``all_gather`` of
    three integers; nothing in one process)."""
    if not is_distributed():
        return
    mine = fingerprint(model, optimizer)
    every = [torch.empty_like(mine) for _ in range(dist.get_world_size())]
    dist.all_gather(every, mine)
    names = ("shapes", "parameters and buffers", "optimiser moments")
    bad = [
        (r, names[k])
        for r, fp in enumerate(every)
        for k in range(3)
        if int(fp[k]) != int(every[0][k])
    ]
    if bad:
        ranks = sorted({r for r, _ in bad})
        what = sorted({n for _, n in bad})
        raise ReplicaMismatchError(
            f"expected identical replicas on all {len(every)} processes{when and ' ' + when}, "
            f"got {', '.join(what)} of rank(s) {ranks} differing from rank 0"
        )


# ----------------------------------------------------------------------- wrappers
def wrap(model: nn.Module, **ddp_kwargs: Any) -> DDP:
    """``DistributedDataParallel(model, **ddp_kwargs)``, remembered so that :func:`rewrap`
    rebuilds it with the same settings, and so that a structural operation called on ``model``
    outside :func:`synchronise` raises :class:`UnsynchronisedError`."""
    wrapper = DDP(model, **ddp_kwargs)
    _KWARGS[wrapper] = dict(ddp_kwargs)
    _WRAPPER[model] = weakref.ref(wrapper)
    REPLICATED.add(model)
    return wrapper


def _kwargs_of(wrapper: DDP) -> dict[str, Any]:
    if wrapper in _KWARGS:
        return _KWARGS[wrapper]
    return {  # a wrapper built elsewhere: the settings DDP keeps as attributes
        "device_ids": wrapper.device_ids,
        "output_device": wrapper.output_device,
        "dim": wrapper.dim,
        "process_group": wrapper.process_group,
        "find_unused_parameters": wrapper.find_unused_parameters,
        "gradient_as_bucket_view": wrapper.gradient_as_bucket_view,
        "bucket_cap_mb": wrapper.bucket_bytes_cap / 2**20,
    }


def _stale(wrapper: DDP, *_: object) -> None:
    raise StaleWrapperError(
        f"expected the wrapper returned by the last structural change, got a stale "
        f"{type(wrapper).__name__}: its parameters were replaced (it would silently stop "
        "synchronising them); use the one isoproof.distributed.synchronise/rewrap returned"
    )


def rewrap(wrapper: DDP) -> DDP:
    """A new wrapper over ``wrapper.module`` with the same settings; the old one is disabled
    (calling it raises :class:`StaleWrapperError`)."""
    wrapper.register_forward_pre_hook(_stale)
    return wrap(wrapper.module, **_kwargs_of(wrapper))


def _parameter_ids(model: nn.Module) -> list[int]:
    return [id(p) for p in model.parameters()]


@contextmanager
def synchronised(
    model: nn.Module, optimizer: torch.optim.Optimizer | None = None
) -> Iterator[nn.Module]:
    """Run structural operations on the module inside (yielded) identically on every rank.

    Checks the replicas before and after (:func:`check_replicas`) and routes every
    factorisation and random draw through rank 0. The caller rebuilds the wrapper afterwards
    (:func:`rewrap`), or uses :func:`synchronise`, which does both; a wrapper made by
    :func:`wrap` whose parameters were replaced is disabled either way.
    """
    module = model.module if isinstance(model, DDP) else model
    device = _device(module)
    if is_distributed():
        for buf in module.buffers():
            dist.broadcast(buf, 0)  # DDP's convention: rank 0's buffers hold
    check_replicas(module, optimizer, when="before the structural change")
    before = _parameter_ids(module)
    token = AGREE.set(lambda compute: _from_rank0(compute, device))
    try:
        yield module
    finally:
        AGREE.reset(token)
        old = _WRAPPER.get(module)
        wrapper = old() if old is not None else None
        if wrapper is not None and _parameter_ids(module) != before:
            wrapper.register_forward_pre_hook(_stale)
            del _WRAPPER[module]
    check_replicas(module, optimizer, when="after the structural change")


def synchronise(
    model: nn.Module,
    op: Callable[..., Receipt],
    *args: Any,
    optimizer: torch.optim.Optimizer | None = None,
    **kwargs: Any,
) -> tuple[nn.Module, Receipt]:
    """Run the structural operation ``op(module, *args, optimizer=optimizer, **kwargs)`` on every
    rank identically; return ``(wrapper, receipt)``.

    Args:
        model: a ``DistributedDataParallel`` wrapper (or the bare model in one process).
        op: ``isoproof.adapt``, ``grow``, ``prune``, ``prune_below``, ``prune_dead``,
            ``sparsify``, ``rotate``, ... (anything built on ``Surgery``).
        optimizer: the optimiser whose moments follow the change (checked across ranks too).

    Returns:
        The wrapper to use from now on (a new one if parameters were replaced, the old one is
        then disabled) and the operation's :class:`Receipt`, identical on every rank.

    Raises:
        ReplicaMismatchError: the replicas differed before or after the change.
        Whatever ``op`` raises, on every rank, with model and optimiser unchanged.
    """
    if not isinstance(model, DDP) and model in _WRAPPER:
        model = _WRAPPER[model]() or model  # the bare model of a wrap(): rebuild its wrapper
    before = _parameter_ids(model.module if isinstance(model, DDP) else model)
    with synchronised(model, optimizer) as module:
        receipt = op(module, *args, optimizer=optimizer, **kwargs)
    if isinstance(model, DDP) and _parameter_ids(module) != before:
        model = rewrap(model)
    return model, receipt


# ----------------------------------------------------------------------- small collectives
def any_process(flag: bool, device: torch.device | str = "cpu") -> bool:
    """True on every rank if ``flag`` is true on any (one ``all_reduce``; ``flag`` alone in one
    process)."""
    if not is_distributed():
        return flag
    t = torch.tensor([int(flag)], dtype=torch.int64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def sum_over_processes(values: list[float], device: torch.device | str = "cpu") -> list[float]:
    """Each value summed over the processes, added in rank order so that every rank gets the
    same bits (one ``all_gather``)."""
    if not is_distributed():
        return [float(v) for v in values]
    mine = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
    every = [torch.empty_like(mine) for _ in range(dist.get_world_size())]
    dist.all_gather(every, mine)
    rows = [e.cpu().tolist() for e in every]
    return [sum(col, 0.0) for col in zip(*rows, strict=True)]


def broadcast_json(obj: Any, device: torch.device | str = "cpu") -> Any:
    """Rank 0's ``obj`` (anything ``json`` writes; floats round-trip exactly) on every rank.
    ``device``: where the backend communicates (the model's device)."""
    if not is_distributed():
        return obj
    data = json.dumps(obj).encode() if dist.get_rank() == 0 else b""
    size = torch.tensor([len(data)], dtype=torch.int64, device=device)
    dist.broadcast(size, 0)
    buf = torch.zeros(int(size), dtype=torch.uint8, device=device)
    if dist.get_rank() == 0:
        buf.copy_(torch.frombuffer(bytearray(data), dtype=torch.uint8))
    dist.broadcast(buf, 0)
    return json.loads(buf.cpu().numpy().tobytes().decode())


def write_on_rank0(write: Callable[[], object], device: torch.device | str = "cpu") -> None:
    """Rank 0 runs ``write`` (a file write, atomic by :mod:`isoproof.files`); every rank waits
    until it is done, so all can read the file next. If it fails on rank 0, every rank raises
    (rank 0 its own error): nobody waits for a file that never comes.

    Raises:
        IsoproofError: on the other ranks, when rank 0's write failed.
    """
    error: BaseException | None = None
    if rank() == 0:
        try:
            write()
        except BaseException as e:  # re-raised below, after every rank knows
            error = e
    if any_process(error is not None, device):  # also the barrier
        if error is not None:
            raise error
        raise IsoproofError("expected rank 0 to write the file, got an error there")


def save(model: nn.Module, path: str | os.PathLike[str]) -> Path:
    """Rank 0 writes ``model`` with :func:`isoproof.save` (atomically); every rank waits until
    the file is complete, so all can :func:`isoproof.load` it next. Returns the path."""
    from .io import save as save_model

    module = model.module if isinstance(model, DDP) else model
    write_on_rank0(lambda: save_model(module, path), _device(module))
    return Path(path)
