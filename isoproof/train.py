"""Training loop for networks that change shape while they train.

:func:`fit` is the paper's setup (``docs/method.md`` §7): AdamW (lr 1e-3,
weight decay 1e-3), mini-batches of 48, loss ``cross-entropy + model.penalty()`` (the psi decay
``0.1 sum |psi|^2`` of an :class:`~isoproof.IsotropicMLP`; nothing for a plain ``nn.Module``).
After every epoch it may resize the model, always passing the optimiser so that its moments follow
every change of basis and new neurons start with zero moments (:mod:`isoproof.optim`):

* :class:`AdaptSchedule` runs the scaffold buffer :func:`isoproof.adapt` (keep ``buffer`` neurons
  with ``sigma <= threshold`` per hidden layer; the paper's run: 5 and 0.95);
* :class:`WidthSchedule` ("neuroabundance", Exp 4) moves each hidden layer linearly from its
  starting width to a target: after epoch ``e`` layer ``h`` has
  ``round(start_h + (target_h - start_h) * min(e / epochs, 1))`` neurons, reached with
  :func:`isoproof.grow` (scaffold neurons, exact) or :func:`isoproof.prune` (the weakest, bounded).

The returned :class:`History` has one entry per epoch plus an entry ``0`` for the untrained model:
accuracies, widths, stored parameters, singular values of every affine map, ``sum |psi|``, and the
seconds spent training and resizing. With ``seed=`` the data order and the new neurons' outgoing
weights come from seeded generators, so the same seed (and the same initial model) gives the same
history.

``fit(..., checkpoint=path)`` writes a training checkpoint after every epoch (the model, the
optimiser state, the generators and the history: :mod:`isoproof.checkpoint`), and
``fit(isoproof.load(path), ..., resume=path)`` continues from it: ``fit(epochs=4)`` and
``fit(epochs=2, checkpoint=p)`` followed by ``fit(epochs=4, resume=p)`` end with the same bits.

Under ``torch.distributed`` (a process group of several processes, e.g. ``torchrun``) the same
``fit`` call runs on every process: the model is wrapped in ``DistributedDataParallel``, each
process reads its shard of every epoch through a ``DistributedSampler`` (``batch_size`` is the
global batch, split evenly), every resize runs through :func:`isoproof.distributed.synchronise`
(rank 0 computes the changes of basis, the replicas are checked and the wrapper rebuilt),
evaluation, progress and checkpoint writes run on rank 0, and the returned :class:`History` is
identical on every process.

Example::

    >>> from isoproof.data import load_digits
    >>> data = load_digits()
    >>> model = IsotropicMLP([64, 32, 32, 10], generator=torch.Generator().manual_seed(0))
    >>> history = fit(model, data, epochs=3, adapt=AdaptSchedule(buffer=2, threshold=0.5),
    ...               seed=0, verbose=False)
    >>> history.test_accuracy[-1] > 0.8, history.widths[-1] == model.widths
    (True, True)

An interrupted run, resumed (the same bits as the run that was never interrupted)::

    >>> from isoproof.data import load_digits
    >>> data = load_digits().subset(240, 60)
    >>> net = lambda: IsotropicMLP([64, 8, 10], generator=torch.Generator().manual_seed(0))
    >>> kw = dict(adapt=AdaptSchedule(buffer=2, threshold=0.9), seed=0, verbose=False)
    >>> whole = net()
    >>> h = fit(whole, data, epochs=3, **kw)
    >>> path = tmp_path / "run.safetensors"
    >>> _ = fit(net(), data, epochs=2, checkpoint=path, **kw)  # "interrupted" after 2
    >>> resumed = ip.load(path)
    >>> h2 = fit(resumed, data, epochs=3, resume=path, **kw)
    >>> h2.to_dict(timings=False) == h.to_dict(timings=False), resumed.widths == whole.widths
    (True, True)
    >>> all(torch.equal(p, q) for p, q in zip(resumed.parameters(), whole.parameters()))
    True
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data.distributed import DistributedSampler

from ._validate import check_seed
from .checkpoint import TrainingState, check_saveable, read_checkpoint, write_checkpoint
from .data import Dataset, MultiTaskDataset
from .distributed import (
    any_process,
    broadcast_json,
    is_distributed,
    rank,
    sum_over_processes,
    synchronise,
    world_size,
    wrap,
    write_on_rank0,
)
from .exceptions import CheckpointError, IsoproofError, NonFiniteError, WidthError
from .mlp import IsotropicMLP, count_parameters
from .network import IsotropicNet
from .ops._surgery import check_model
from .ops.diagonalisation import singular_values
from .ops.neurodegeneration import prune
from .ops.neurogenesis import grow
from .ops.scaffold import adapt as adapt_model
from .progress import Progress
from .receipt import Receipt
from .standard import linear_layers, widths_of

__all__ = [
    "AdaptSchedule",
    "Callback",
    "History",
    "TaskWeights",
    "WidthSchedule",
    "evaluate",
    "fit",
    "layer_spectra",
]

Data = Dataset | MultiTaskDataset
TaskWeights = Sequence[Sequence[float]] | Callable[[int], Sequence[float]]
Callback = Callable[[int, nn.Module, "History"], object]


@dataclass(frozen=True)
class AdaptSchedule:
    """Run :func:`isoproof.adapt` after every ``every``-th epoch.

    Args:
        buffer: scaffold neurons to keep per hidden layer (``sigma <= threshold``); paper: 5.
        threshold: the singular-value threshold; paper: 0.95 (orthogonal init gives 1).
        every: epochs between two adaptations.
        init_scale: scale of the new neurons' outgoing weights.
    """

    buffer: int = 5
    threshold: float = 0.95
    every: int = 1
    init_scale: float = 0.01

    def __post_init__(self) -> None:
        if isinstance(self.buffer, bool) or not isinstance(self.buffer, int) or self.buffer < 0:
            raise IsoproofError(f"expected buffer to be an int >= 0, got {self.buffer!r}")
        if not (isinstance(self.threshold, int | float) and math.isfinite(self.threshold)):
            raise IsoproofError(f"expected a finite threshold >= 0, got {self.threshold!r}")
        if self.threshold < 0:
            raise IsoproofError(f"expected a finite threshold >= 0, got {self.threshold!r}")
        if isinstance(self.every, bool) or not isinstance(self.every, int) or self.every < 1:
            raise IsoproofError(f"expected every to be an int >= 1, got {self.every!r}")

    def __call__(
        self,
        model: IsotropicMLP,
        epoch: int,
        optimizer: torch.optim.Optimizer | None,
        generator: torch.Generator | None,
    ) -> list[Receipt]:
        if epoch % self.every:
            return []
        return [
            adapt_model(
                model,
                buffer=self.buffer,
                threshold=float(self.threshold),
                init_scale=self.init_scale,
                generator=generator,
                optimizer=optimizer,
            )
        ]


@dataclass(frozen=True)
class WidthSchedule:
    """Move every hidden layer linearly to ``target`` widths over ``epochs`` epochs.

    Args:
        target: one width per hidden layer (``len(model.widths) - 2`` entries).
        epochs: epochs to reach the target (``None``: the whole :func:`fit`).
        init_scale: scale of the new neurons' outgoing weights.
    """

    target: tuple[int, ...]
    epochs: int | None = None
    init_scale: float = 0.01

    def __post_init__(self) -> None:
        try:
            target = tuple(int(w) for w in self.target)
        except (TypeError, ValueError):
            raise WidthError(f"expected a sequence of ints >= 1, got {self.target!r}") from None
        if not target or min(target) < 1:
            raise WidthError(f"expected hidden target widths >= 1, got {self.target!r}")
        object.__setattr__(self, "target", target)
        if self.epochs is not None and (
            isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1
        ):
            raise IsoproofError(f"expected epochs to be None or an int >= 1, got {self.epochs!r}")

    def widths_at(self, epoch: int, start: Sequence[int], total_epochs: int) -> list[int]:
        """Hidden widths after ``epoch`` (``0`` gives ``start``)."""
        if len(start) != len(self.target):
            raise WidthError(
                f"expected {len(start)} target widths (one per hidden layer), "
                f"got {len(self.target)}: {list(self.target)}"
            )
        span = self.epochs or total_epochs
        frac = min(epoch / span, 1.0) if span else 1.0
        return [round(a + (b - a) * frac) for a, b in zip(start, self.target, strict=True)]

    def __call__(
        self,
        model: IsotropicMLP,
        epoch: int,
        start: Sequence[int],
        total_epochs: int,
        optimizer: torch.optim.Optimizer | None,
        generator: torch.Generator | None,
    ) -> list[Receipt]:
        receipts = []
        want = self.widths_at(epoch, start, total_epochs)
        for h in reversed(range(len(want))):  # last layer first, as the paper adapts
            have = model.widths[h + 1]
            if want[h] > have:
                receipts.append(
                    grow(
                        model,
                        h,
                        want[h] - have,
                        init_scale=self.init_scale,
                        generator=generator,
                        optimizer=optimizer,
                    )
                )
            elif want[h] < have:
                receipts.append(prune(model, h, have - want[h], optimizer=optimizer))
        return receipts


@dataclass
class History:
    """Per-epoch record of a :func:`fit` run; index 0 is the model before training.

    ``train_loss``/``train_accuracy`` of epochs >= 1 are running means over the epoch's batches
    (before that epoch's resize); test figures, widths and spectra are measured after the resize.
    ``task_accuracy[e][t]`` is task ``t``'s test accuracy (multi-task data only).
    """

    epoch: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    test_loss: list[float] = field(default_factory=list)
    test_accuracy: list[float] = field(default_factory=list)
    task_names: list[str] = field(default_factory=list)
    task_weights: list[list[float]] = field(default_factory=list)
    task_accuracy: list[list[float]] = field(default_factory=list)
    widths: list[list[int]] = field(default_factory=list)
    parameters: list[int] = field(default_factory=list)
    singular_values: list[list[list[float]]] = field(default_factory=list)
    psi_abs_sum: list[float] = field(default_factory=list)
    resizes: list[list[str]] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)
    resize_seconds: list[float] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)

    TIMINGS = ("epoch_seconds", "resize_seconds")

    def to_dict(self, *, timings: bool = True) -> dict[str, Any]:
        """A JSON-ready dict (``timings=False`` drops the wall-clock fields, which vary)."""
        d = asdict(self)
        if not timings:
            for key in self.TIMINGS:
                d.pop(key)
        return d

    def __len__(self) -> int:
        return len(self.epoch)


# ----------------------------------------------------------------------- helpers
def _param_like(model: nn.Module) -> torch.Tensor:
    for p in model.parameters():
        return p
    raise IsoproofError(f"expected a model with parameters, got {type(model).__name__}")


def layer_spectra(model: nn.Module) -> list[torch.Tensor]:
    """Singular values (float64, descending) of every affine map, one per output neuron.

    An :class:`~isoproof.IsotropicMLP` uses :func:`isoproof.singular_values`; other models every
    ``nn.Linear`` in order, padded with zeros the same way (rows beyond the input width).
    """
    if isinstance(model, IsotropicNet):
        return [singular_values(model, i) for i in range(model.num_layers)]
    out = []
    for lin in linear_layers(model):
        w = lin.weight.detach().to(torch.float64)
        s = torch.linalg.svdvals(w)
        out.append(torch.cat([s, s.new_zeros(w.shape[0] - s.numel())]))
    return out


def _psi_abs_sum(model: nn.Module) -> float:
    if isinstance(model, IsotropicNet) and model.psi_mode != "none":
        return float(sum(float(p.detach().abs().sum()) for p in model.psi))
    return 0.0


def _penalty(model: nn.Module) -> torch.Tensor | None:
    fn = getattr(model, "penalty", None)
    return fn() if callable(fn) else None


def _task_weights(data: Data, weights: TaskWeights | None, epoch: int) -> list[float]:
    if not isinstance(data, MultiTaskDataset):
        if weights is not None:
            raise IsoproofError("expected task_weights only with a MultiTaskDataset, got a Dataset")
        return []
    if weights is None:
        w: Sequence[float] = [1.0] * len(data.tasks)
    elif callable(weights):
        w = weights(epoch)
    else:
        if not 1 <= epoch <= len(weights):
            raise IsoproofError(
                f"expected task weights for every epoch (1..{epoch}), got {len(weights)} rows"
            )
        w = weights[epoch - 1]
    return list(data.check_weights(w))


def _loss(
    data: Data, logits: torch.Tensor, y: torch.Tensor, t: torch.Tensor | None, w: list[float]
) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean loss, predictions) for a batch."""
    if isinstance(data, MultiTaskDataset):
        assert t is not None
        return data.loss(logits, y, t, w), data.predict(logits, t)
    return F.cross_entropy(logits, y), logits.argmax(-1)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: Data,
    split: str = "test",
    *,
    task_weights: Sequence[float] | None = None,
    batch_size: int = 4096,
    device: torch.device | str | None = None,
) -> dict[str, Any]:
    """Loss (cross-entropy, without penalty) and accuracy of ``model`` on a split, in eval mode.

    Returns ``{"loss", "accuracy", "task_accuracy"}`` (the last a list, multi-task data only).
    """
    if split not in ("train", "test"):
        raise IsoproofError(f"expected split 'train' or 'test', got {split!r}")
    ref = _param_like(model)
    device = ref.device if device is None else torch.device(device)
    x, y = getattr(data, f"x_{split}"), getattr(data, f"y_{split}")
    t = getattr(data, f"task_{split}") if isinstance(data, MultiTaskDataset) else None
    w = list(data.check_weights(task_weights or [1.0] * len(data.tasks))) if t is not None else []
    was_training = model.training
    model.eval()
    try:
        loss_sum, preds = 0.0, []
        for i in range(0, x.shape[0], batch_size):
            xb = x[i : i + batch_size].to(device=device, dtype=ref.dtype)
            yb = y[i : i + batch_size].to(device)
            tb = None if t is None else t[i : i + batch_size].to(device)
            loss, pred = _loss(data, model(xb), yb, tb, w)
            loss_sum += float(loss) * xb.shape[0]
            preds.append(pred.cpu())
    finally:
        model.train(was_training)
    n = max(int(x.shape[0]), 1)
    correct = torch.cat(preds) == y if preds else torch.zeros(0, dtype=torch.bool)
    tasks = (
        [float(correct[t == k].float().mean()) for k in range(len(data.tasks))]
        if t is not None
        else []
    )
    return {"loss": loss_sum / n, "accuracy": float(correct.float().mean()), "task_accuracy": tasks}


def _check_positive(name: str, value: object, *, integer: bool = True) -> None:
    kind = int if integer else int | float
    ok = isinstance(value, kind) and not isinstance(value, bool)
    if not ok or not math.isfinite(float(value)) or float(value) <= 0:  # type: ignore[arg-type]
        what = "an int >= 1" if integer else "a finite number > 0"
        raise IsoproofError(f"expected {name} to be {what}, got {value!r}")


# ----------------------------------------------------------------------- fit
def fit(
    model: nn.Module,
    data: Data,
    *,
    epochs: int,
    lr: float = 1e-3,
    weight_decay: float = 1e-3,
    batch_size: int = 48,
    adapt: AdaptSchedule | None = None,
    width_schedule: WidthSchedule | Sequence[int] | None = None,
    task_weights: TaskWeights | None = None,
    callbacks: Sequence[Callback] = (),
    optimizer: torch.optim.Optimizer | None = None,
    seed: int | None = None,
    device: torch.device | str | None = None,
    verbose: bool = True,
    checkpoint: str | os.PathLike[str] | None = None,
    resume: str | os.PathLike[str] | None = None,
) -> History:
    """Train ``model`` on ``data`` for ``epochs`` epochs, resizing it after each as scheduled
    (under ``torch.distributed`` on every process: see the module docstring).

    Args:
        model: an :class:`~isoproof.IsotropicMLP` or any classifier ``nn.Module`` mapping
            ``[B, n_features]`` to ``[B, n_classes]`` logits (``adapt``/``width_schedule`` need the
            former), or a ``DistributedDataParallel`` wrapper of one.
        data: a :class:`~isoproof.data.Dataset` or :class:`~isoproof.data.MultiTaskDataset`.
        epochs: number of passes over the training split.
        lr, weight_decay: AdamW settings (ignored when ``optimizer`` is given).
        batch_size: mini-batch size; with several processes the global batch (a multiple).
        adapt: scaffold-buffer schedule (:class:`AdaptSchedule`).
        width_schedule: a :class:`WidthSchedule` or the hidden widths reached at the end.
        task_weights: multi-task only: per-epoch loss weights (a row per epoch, or
            ``f(epoch) -> weights``, epochs from 1); weight-0 tasks are skipped. Default: all 1.
        callbacks: ``f(epoch, model, history)`` after each epoch; ``True`` stops (rank 0's).
        optimizer: an SGD/Adam/AdamW over ``model``'s parameters (default: a new AdamW); every
            resize transforms its state.
        seed: seeds the data order and the new neurons' weights (``None``: random).
        device: where to train (default: where the model is).
        verbose: show progress (a bar on a terminal, else a line per epoch on stderr).
        checkpoint: write a training checkpoint (:mod:`isoproof.checkpoint`) here after every
            epoch, atomically; needs a saveable model and an SGD/Adam/AdamW.
        resume: continue the run saved in this checkpoint: pass ``isoproof.load(resume)`` and
            the interrupted run's arguments (``epochs``: the total to reach); the result is
            bit-identical to a run never interrupted (keep a :class:`WidthSchedule`'s ``epochs``;
            without them it spans ``epochs``, which must then be the same). A run a callback
            stopped is returned as it is.

    Returns:
        The :class:`History`; the model is trained (and resized) in place.

    Raises:
        IsoproofError: an invalid argument (one line naming it).
        WidthError: the model does not fit the data or the width schedule.
        NonFiniteError: the loss became NaN/Inf (try a smaller ``lr``).
        NotIsotropicError: ``checkpoint`` with a model no format is registered for.
        CheckpointError: ``resume`` is missing, damaged, or from another model, optimiser or
            settings; model, optimiser and generators are unchanged then.

    Examples:
        The module docstring trains a model, then resumes an interrupted run bit-identically.
    """
    width_schedule = _check_fit(data, epochs, batch_size, lr, weight_decay, adapt, width_schedule)
    checkpoint, resume = _check_path("checkpoint", checkpoint), _check_path("resume", resume)
    run = _start(model, data, epochs, batch_size, adapt, width_schedule, task_weights, seed, device)
    run.checkpoint = checkpoint
    run.optimizer = _optimiser(run, optimizer, lr, weight_decay, checkpoint)
    settings = {"lr": lr, "weight_decay": weight_decay, "batch_size": batch_size, "seed": seed}
    history = _new_history(run, settings)
    history, first = _begin(run, history, resume)
    if first > epochs:  # a finished run, or one a callback stopped
        return history
    progress = _progress(run, first, epochs, verbose)
    try:
        for epoch in range(first, epochs + 1):
            if _epoch(run, epoch, history, progress, callbacks):
                break
    finally:
        progress.close()
    return history


def _begin(run: _Run, history: History, resume: Path | None) -> tuple[History, int]:
    """The history to continue and the first epoch to train: a new run records epoch 0; a
    resumed one continues after its last epoch, or trains none if a callback stopped it."""
    if resume is None:
        _record(history, run, 0, None, [], 0.0, 0.0)
        return history, 1
    history, stopped = _resume(run, history, resume)
    return history, run.epochs + 1 if stopped else len(history)


def _optimiser(
    run: _Run,
    optimizer: torch.optim.Optimizer | None,
    lr: float,
    weight_decay: float,
    checkpoint: Path | None,
) -> torch.optim.Optimizer:
    """The optimiser to train with (default: a new AdamW), checked now if checkpoints are due."""
    if optimizer is None:
        params = [p for p in run.model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if checkpoint is not None:
        check_saveable(run.model, optimizer)  # now, not after the first epoch's work
    return optimizer


def _progress(run: _Run, first: int, epochs: int, verbose: bool) -> Progress:
    """Progress over the batches of epochs ``first..epochs`` (rank 0 only)."""
    steps = sum(math.ceil(_active(run, w) / run.batch_size) for w in run.weights[first - 1 :])
    return Progress(f"epoch {first}/{epochs}", steps, enabled=verbose and rank() == 0, notes=True)


def _epoch(
    run: _Run, epoch: int, history: History, progress: Progress, callbacks: Sequence[Callback]
) -> bool:
    """Train one epoch, resize, record; returns whether a callback (rank 0's) asks to stop."""
    t0 = time.perf_counter()
    sums = _train_epoch(run, epoch, progress)
    t1 = time.perf_counter()
    receipts = _resize(run, epoch)
    t2 = time.perf_counter() if receipts else t1
    _record(history, run, epoch, sums, receipts, t1 - t0, t2 - t1)
    progress.note(
        f"epoch {epoch}/{run.epochs}: loss {history.train_loss[-1]:.4f}, train "
        f"{history.train_accuracy[-1]:.1%}, test {history.test_accuracy[-1]:.1%}, widths "
        f"{history.widths[-1]}, {t1 - t0:.2f} s + resize {t2 - t1:.3f} s"
    )
    stop = any([cb(epoch, run.model, history) is True for cb in callbacks])  # call them all
    stop = bool(broadcast_json(stop, run.device))  # rank 0 decides for every process
    if run.checkpoint is not None:
        _save_checkpoint(run, epoch, history, stop)
    return stop


_GENERATORS = ("neurons", "shuffle")


def _save_checkpoint(run: _Run, epoch: int, history: History, stopped: bool) -> None:
    """Write the training checkpoint of ``epoch`` (rank 0; every process waits for it). Under
    several processes the generators that count are rank 0's: it draws every new neuron.
    ``stopped``: a callback stopped the run (resuming it trains no further epoch)."""

    def write() -> None:
        assert run.checkpoint is not None
        write_checkpoint(
            run.checkpoint,
            run.model,
            run.optimizer,
            epoch=epoch,
            history=history.to_dict(),
            generators={"neurons": run.neurons, "shuffle": run.shuffle},
            run={
                "order_seed": run.order_seed,
                "start_hidden": run.start_hidden,
                "stopped": stopped,
            },
        )

    write_on_rank0(write, run.device)


def _resume(run: _Run, fresh: History, path: Path) -> tuple[History, bool]:
    """Restore the run saved at ``path`` into ``run`` (optimiser state, generators, the values
    fixed at its start) and return its history and whether a callback stopped it. Everything is
    checked first: a refused checkpoint changes nothing."""
    state = read_checkpoint(path, run.model, run.optimizer, generators=_GENERATORS)
    history = _stored_history(path, state.history, state.epoch)
    _check_settings(path, run, history.settings, fresh.settings)
    if state.epoch > run.epochs:
        raise IsoproofError(
            f"expected epochs >= {state.epoch} (the epoch {path} reached), got {run.epochs}"
        )
    order_seed, start, stopped = _stored_run(path, run, state, history, fresh.settings["seed"])
    state.restore(run.optimizer, {"neurons": run.neurons, "shuffle": run.shuffle})
    run.order_seed, run.start_hidden = order_seed, start
    history.settings = fresh.settings  # the same, but for epochs (and tuples, not JSON lists)
    return history, stopped


def _check_settings(path: Path, run: _Run, saved: dict[str, Any], fresh: dict[str, Any]) -> None:
    """The checkpointed run's settings are this call's, but for ``epochs`` (the total to reach),
    which must be the same too when a ``WidthSchedule(epochs=None)`` spans the whole run."""
    spans_run = run.width_schedule is not None and run.width_schedule.epochs is None
    skip = () if spans_run else ("epochs",)
    saved = {k: v for k, v in saved.items() if k not in skip}
    want = json.loads(json.dumps({k: v for k, v in fresh.items() if k not in skip}))
    for key in sorted(set(saved) | set(want)):
        if saved.get(key) != want.get(key):
            why = " (a WidthSchedule without epochs spans the whole run)" if key == "epochs" else ""
            raise CheckpointError(
                f"{path}: expected the checkpointed run's setting {key}={saved.get(key)!r}, "
                f"got {key}={want.get(key)!r}{why}"
            )


def _stored_run(
    path: Path, run: _Run, state: TrainingState, history: History, seed: int | None
) -> tuple[int, list[int], bool]:
    """The checkpoint's ``order_seed``, starting hidden widths and ``stopped`` flag, checked:
    the seed is this call's, the start is the history's first widths and, with a width
    schedule, leads to the model's widths (a forged start would drive the schedule anywhere)."""
    order_seed, start = state.run.get("order_seed"), state.run.get("start_hidden")
    stopped = state.run.get("stopped")
    check_seed(order_seed, f"{path}: order_seed", CheckpointError)
    if seed is not None and order_seed != seed:
        raise CheckpointError(f"{path}: expected order_seed {seed} (the seed), got {order_seed}")
    first = history.widths[0][1:-1] if isinstance(history.widths[0], list) else None
    if not (isinstance(first, list) and first == start and len(first) == len(run.start_hidden)
            and all(type(w) is int and w >= 1 for w in first)):  # fmt: skip
        raise CheckpointError(
            f"{path}: expected {len(run.start_hidden)} starting hidden widths {first!r:.80} "
            f"(the history's first), got {start!r:.80}"
        )
    if run.width_schedule is not None:
        want = run.width_schedule.widths_at(state.epoch, start, run.epochs)
        have = list(widths_of(run.model))[1:-1]
        if want != have:
            raise CheckpointError(
                f"{path}: expected the model's hidden widths {want} (the width schedule from "
                f"{start} after epoch {state.epoch}), got {have}"
            )
    if type(stopped) is not bool:
        raise CheckpointError(f"{path}: expected stopped true or false, got {stopped!r:.40}")
    return order_seed, start, stopped


def _stored_history(path: Path, stored: dict[str, Any], epoch: int) -> History:
    """The :class:`History` of a checkpoint: every field, one entry per epoch 0..``epoch``."""
    names = {f.name for f in fields(History)}
    if set(stored) != names:
        raise CheckpointError(
            f"{path}: expected a history with every History field, got one missing "
            f"{sorted(names - set(stored))} and with unknown {sorted(set(stored) - names)}"
        )
    per_epoch = names - {"settings", "task_names"}
    bad = sorted(n for n in per_epoch if not isinstance(stored[n], list))
    bad += sorted(n for n in per_epoch if n not in bad and len(stored[n]) != epoch + 1)
    if bad or stored["epoch"] != list(range(epoch + 1)) or not isinstance(stored["settings"], dict):
        raise CheckpointError(
            f"{path}: expected a history of epochs 0..{epoch} (one entry each), got other "
            f"entries in {bad or ['epoch', 'settings']}"
        )
    return History(**stored)


def _check_path(name: str, value: object) -> Path | None:
    if value is None:
        return None
    if not isinstance(value, str | os.PathLike) or not str(value):
        raise IsoproofError(f"expected {name} to be a file path or None, got {value!r}")
    return Path(value)


def _new_history(run: _Run, settings: dict[str, Any]) -> History:
    data = run.data
    return History(
        task_names=list(data.task_names) if isinstance(data, MultiTaskDataset) else [],
        settings={
            "data": data.name,
            "epochs": run.epochs,
            "lr": settings["lr"],
            "weight_decay": settings["weight_decay"],
            "batch_size": settings["batch_size"],
            "optimizer": type(run.optimizer).__name__,
            "adapt": asdict(run.adapt) if run.adapt else None,
            "width_schedule": asdict(run.width_schedule) if run.width_schedule else None,
            "seed": settings["seed"],
            **({"processes": world_size()} if run.distributed else {}),
        },
    )


def _check_fit(
    data: object,
    epochs: object,
    batch_size: object,
    lr: object,
    weight_decay: object,
    adapt: object,
    width_schedule: object,
) -> WidthSchedule | None:
    """Validate the arguments of :func:`fit`; returns the width schedule as a WidthSchedule."""
    _check_positive("epochs", epochs)
    _check_positive("batch_size", batch_size)
    _check_positive("lr", lr, integer=False)
    if not (isinstance(weight_decay, float | int) and weight_decay >= 0):
        raise IsoproofError(f"expected weight_decay >= 0, got {weight_decay!r}")
    if not isinstance(data, Dataset | MultiTaskDataset):
        raise IsoproofError(f"expected a Dataset or MultiTaskDataset, got {type(data).__name__}")
    if adapt is not None and width_schedule is not None:
        raise IsoproofError("expected at most one of adapt and width_schedule, got both")
    if adapt is not None and not isinstance(adapt, AdaptSchedule):
        raise IsoproofError(f"expected adapt to be an AdaptSchedule, got {type(adapt).__name__}")
    if width_schedule is not None and not isinstance(width_schedule, WidthSchedule):
        width_schedule = WidthSchedule(tuple(width_schedule))  # type: ignore[arg-type]
    return width_schedule  # type: ignore[return-value]


@dataclass
class _Run:
    """The state of one :func:`fit`: resolved arguments, training tensors, generators."""

    model: nn.Module  # the model itself (resized in place)
    net: nn.Module  # what batches go through: the model, or its DistributedDataParallel wrapper
    data: Data
    epochs: int
    batch_size: int  # per process
    adapt: AdaptSchedule | None
    width_schedule: WidthSchedule | None
    weights: list[list[float]]  # every epoch's task weights
    start_hidden: list[int]
    x: torch.Tensor
    y: torch.Tensor
    t: torch.Tensor | None
    shuffle: torch.Generator
    neurons: torch.Generator
    order_seed: int  # the DistributedSampler's seed (several processes)
    distributed: bool
    optimizer: Any = None
    checkpoint: Path | None = None  # written after every epoch

    @property
    def device(self) -> torch.device:
        return self.x.device


def _start(
    model: nn.Module,
    data: Data,
    epochs: int,
    batch_size: int,
    adapt: AdaptSchedule | None,
    width_schedule: WidthSchedule | None,
    task_weights: TaskWeights | None,
    seed: int | None,
    device: torch.device | str | None,
) -> _Run:
    """Check the model against the data and the schedules; set up generators and tensors."""
    if seed is not None:
        check_seed(seed)
    net = model
    model = model.module if isinstance(model, DistributedDataParallel) else model
    if adapt is not None or width_schedule is not None:
        check_model(model)  # resizing is defined for isotropic models only
    if device is not None:
        model.to(device)
    ref = _param_like(model)
    widths = widths_of(model)
    # an isotropic conv net reports in_features = C*H*W; a plain CNN its input channels
    n_in = int(getattr(model, "in_features", widths[0] if widths else 0))
    fits = n_in in (data.n_features, data.sample_shape[0])
    if widths and (not fits or widths[-1] != data.n_classes):
        raise WidthError(
            f"expected a model mapping {data.n_features} features to {data.n_classes} classes "
            f"for {data.name} (samples of shape {list(data.sample_shape)}), got widths {widths}"
        )
    start_hidden = list(widths[1:-1])
    if width_schedule is not None:
        width_schedule.widths_at(0, start_hidden, epochs)  # validates the number of layers
    processes = world_size()
    if batch_size % processes:
        raise IsoproofError(
            f"expected batch_size (the global batch) divisible by the {processes} processes, "
            f"got {batch_size}"
        )
    shuffle, neurons = torch.Generator(), torch.Generator()
    if seed is None:
        shuffle.seed()
        neurons.seed()
    else:
        shuffle.manual_seed(int(seed))
        neurons.manual_seed(int(seed) + 1)
    order_seed = (
        int(seed) if seed is not None else int(torch.randint(2**62, (1,), generator=shuffle))
    )
    distributed = is_distributed()
    if distributed and not isinstance(net, DistributedDataParallel):
        net = wrap(model)
    return _Run(
        model=model,
        net=net,
        data=data,
        epochs=epochs,
        batch_size=batch_size // processes,
        adapt=adapt,
        width_schedule=width_schedule,
        weights=[_task_weights(data, task_weights, e) for e in range(1, epochs + 1)],
        start_hidden=start_hidden,
        x=data.x_train.to(device=ref.device, dtype=ref.dtype),
        y=data.y_train.to(ref.device),
        t=data.task_train.to(ref.device) if isinstance(data, MultiTaskDataset) else None,
        shuffle=shuffle,
        neurons=neurons,
        order_seed=broadcast_json(order_seed, ref.device),
        distributed=distributed,
    )


def _epoch_rows(run: _Run, epoch: int, w: list[float]) -> torch.Tensor:
    """This process's training rows of ``epoch``, in order: a seeded permutation of the rows of
    tasks with weight > 0 (all rows of a single-task set), sharded by a DistributedSampler."""
    dev = run.device
    if not run.distributed:
        rows = torch.randperm(run.x.shape[0], generator=run.shuffle).to(dev)
        if run.t is not None:
            rows = rows[torch.tensor([wt > 0 for wt in w], device=dev)[run.t[rows]]]
    else:
        rows = torch.arange(run.x.shape[0], device=dev)
        if run.t is not None:
            rows = rows[torch.tensor([wt > 0 for wt in w], device=dev)[run.t]]
        if rows.numel():
            sampler = DistributedSampler(range(rows.numel()), seed=run.order_seed)
            sampler.set_epoch(epoch)
            rows = rows[torch.tensor(list(sampler), dtype=torch.int64, device=dev)]
    if rows.numel() == 0:
        raise IsoproofError(f"expected a task with weight > 0 at epoch {epoch}, got {w}")
    return rows


def _train_epoch(run: _Run, epoch: int, progress: Progress) -> tuple[float, float]:
    """One pass over this process's rows; returns the epoch's (mean loss, accuracy) over every
    process's rows (running means before the resize)."""
    w = run.weights[epoch - 1]
    rows = _epoch_rows(run, epoch, w)
    run.net.train()
    widths_now = widths_of(run.model)  # resizes happen between epochs only
    loss_sum, correct, seen = 0.0, 0, 0
    for step, idx in enumerate(rows.split(run.batch_size)):
        xb, yb = run.x[idx], run.y[idx]
        tb = None if run.t is None else run.t[idx]
        loss, pred = _loss(run.data, run.net(xb), yb, tb, w)
        penalty = _penalty(run.model)
        total = loss if penalty is None else loss + penalty
        if any_process(not bool(torch.isfinite(total)), run.device):
            raise NonFiniteError(
                f"expected a finite loss, got {float(total)} at epoch {epoch} step "
                f"{step + 1} (try a smaller lr)"
            )
        run.optimizer.zero_grad(set_to_none=True)
        total.backward()
        run.optimizer.step()
        loss_sum += float(loss.detach()) * idx.numel()
        correct += int((pred == yb).sum())
        seen += idx.numel()
        progress.update(
            f"loss {loss_sum / seen:.3f} acc {correct / seen:.1%} widths {widths_now}",
            advance=1,
            label=f"epoch {epoch}/{run.epochs}",
        )
    loss_sum, correct, seen = sum_over_processes([loss_sum, correct, seen], run.device)
    return loss_sum / seen, correct / seen


def _resize(run: _Run, epoch: int) -> list[Receipt]:
    """The epoch's scheduled resizes, synchronised across processes (a no-op wrapper in one)."""
    if run.adapt is None and run.width_schedule is None:
        return []

    def scheduled(model: nn.Module, optimizer: torch.optim.Optimizer) -> list[Receipt]:
        if run.adapt is not None:
            return run.adapt(model, epoch, optimizer, run.neurons)  # type: ignore[arg-type]
        assert run.width_schedule is not None
        return run.width_schedule(
            model,  # type: ignore[arg-type]
            epoch,
            run.start_hidden,
            run.epochs,
            optimizer,
            run.neurons,
        )

    run.net, receipts = synchronise(run.net, scheduled, optimizer=run.optimizer)  # type: ignore[arg-type]
    return receipts  # type: ignore[return-value]


def _active(run: _Run, weights: list[float]) -> int:
    """Rows one process visits in an epoch: those of tasks with weight > 0 (all rows otherwise),
    divided among the processes as the DistributedSampler does (rounded up)."""
    n = run.x.shape[0]
    if run.t is not None:
        n = int(sum(int((run.t == k).sum()) for k, w in enumerate(weights) if w > 0))
    return math.ceil(n / world_size()) if run.distributed else n


def _record(
    history: History,
    run: _Run,
    epoch: int,
    train: tuple[float, float] | None,
    receipts: list[Receipt],
    seconds: float,
    resize_seconds: float,
) -> None:
    """Append one epoch to ``history``: measured on rank 0 and broadcast, so every process
    holds the same history. ``train=None``: measure the training split (epoch 0)."""
    model, data = run.model, run.data
    weights = run.weights[max(epoch, 1) - 1]
    entry: dict[str, Any] = {}
    if rank() == 0:
        if train is None:
            first = evaluate(model, data, "train", task_weights=weights or None)
            train = (first["loss"], first["accuracy"])
        test = evaluate(model, data, "test", task_weights=weights or None)
        entry = {
            "epoch": epoch,
            "train_loss": float(train[0]),
            "train_accuracy": float(train[1]),
            "test_loss": test["loss"],
            "test_accuracy": test["accuracy"],
            "task_weights": list(weights),
            "task_accuracy": test["task_accuracy"],
            "widths": list(widths_of(model)),
            "parameters": count_parameters(model),
            "singular_values": [s.tolist() for s in layer_spectra(model)],
            "psi_abs_sum": _psi_abs_sum(model),
            "resizes": [str(r) for r in receipts],
            "epoch_seconds": float(seconds),
            "resize_seconds": float(resize_seconds),
        }
    for key, value in broadcast_json(entry, run.device).items():
        getattr(history, key).append(value)
