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

Example::

    >>> from isoproof.data import load_digits
    >>> data = load_digits()
    >>> model = IsotropicMLP([64, 32, 32, 10], generator=torch.Generator().manual_seed(0))
    >>> history = fit(model, data, epochs=3, adapt=AdaptSchedule(buffer=2, threshold=0.5),
    ...               seed=0, verbose=False)
    >>> history.test_accuracy[-1] > 0.8, history.widths[-1] == model.widths
    (True, True)
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .data import Dataset, MultiTaskDataset
from .exceptions import IsoproofError, NonFiniteError, WidthError
from .mlp import IsotropicMLP, count_parameters
from .ops._surgery import check_model
from .ops.diagonalisation import singular_values
from .ops.neurodegeneration import prune
from .ops.neurogenesis import grow
from .ops.scaffold import adapt as adapt_model
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
    if isinstance(model, IsotropicMLP):
        return [singular_values(model, i) for i in range(model.num_layers)]
    out = []
    for lin in linear_layers(model):
        w = lin.weight.detach().to(torch.float64)
        s = torch.linalg.svdvals(w)
        out.append(torch.cat([s, s.new_zeros(w.shape[0] - s.numel())]))
    return out


def _psi_abs_sum(model: nn.Module) -> float:
    if isinstance(model, IsotropicMLP) and model.psi_mode != "none":
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


class _Progress:
    """A rich progress bar on a terminal, else one printed line per epoch."""

    def __init__(self, verbose: bool, epochs: int, steps: int) -> None:
        """``steps``: the total number of batches of the run."""
        self.bar = None
        self.verbose = verbose
        if not verbose:
            return
        try:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )
        except ImportError:
            return
        console = Console(file=sys.stderr)
        if not console.is_terminal:
            return
        self.bar = Progress(
            TextColumn("epoch {task.fields[epoch]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[info]}"),
            console=console,
        )
        self.task = self.bar.add_task("fit", total=steps, epoch=f"1/{epochs}", info="")
        self.bar.start()

    def step(self, epoch: str, info: str) -> None:
        if self.bar is not None:
            self.bar.update(self.task, advance=1, epoch=epoch, info=info)

    def epoch_done(self, line: str) -> None:
        if self.bar is not None:
            self.bar.console.print(line, highlight=False)
        elif self.verbose:
            print(line, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


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
) -> History:
    """Train ``model`` on ``data`` for ``epochs`` epochs, resizing it after each as scheduled.

    Args:
        model: an :class:`~isoproof.IsotropicMLP` or any classifier ``nn.Module`` mapping
            ``[B, n_features]`` to ``[B, n_classes]`` logits (``adapt``/``width_schedule`` need the
            former).
        data: a :class:`~isoproof.data.Dataset` or :class:`~isoproof.data.MultiTaskDataset`.
        epochs: number of passes over the training split.
        lr, weight_decay: AdamW settings (ignored when ``optimizer`` is given).
        batch_size: mini-batch size (the last batch of an epoch may be smaller).
        adapt: scaffold-buffer schedule (:class:`AdaptSchedule`).
        width_schedule: a :class:`WidthSchedule` or the hidden target widths (reached at the
            last epoch).
        task_weights: multi-task only: per-epoch loss weights, one per task (a list with one row
            per epoch, or ``f(epoch) -> weights`` with ``epoch`` from 1). Rows of tasks with
            weight 0 are skipped. Default: every task weighs 1.
        callbacks: ``f(epoch, model, history)`` called after each epoch; returning ``True``
            stops training.
        optimizer: an SGD/Adam/AdamW over ``model``'s parameters to continue with (default: a
            new AdamW); it is passed to every resize so its state follows.
        seed: seeds the data order and the new neurons' weights (``None``: random).
        device: where to train (default: where the model is).
        verbose: show progress (rich bar on a terminal, else one line per epoch on stderr).

    Returns:
        The :class:`History`; the model is trained (and resized) in place.
    """
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
        width_schedule = WidthSchedule(tuple(width_schedule))
    if adapt is not None or width_schedule is not None:
        check_model(model)  # resizing is defined for isotropic models only
    if device is not None:
        model.to(device)
    ref = _param_like(model)
    dev, dtype = ref.device, ref.dtype
    widths = widths_of(model)
    if widths and (widths[0] != data.n_features or widths[-1] != data.n_classes):
        raise WidthError(
            f"expected a model mapping {data.n_features} features to {data.n_classes} classes "
            f"for {data.name}, got widths {widths}"
        )
    start_hidden = list(widths[1:-1])
    if width_schedule is not None:
        width_schedule.widths_at(0, start_hidden, epochs)  # validates the number of layers
    if optimizer is None:
        optimizer = torch.optim.AdamW(
            [p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=weight_decay
        )
    shuffle = torch.Generator()
    neurons = torch.Generator()
    if seed is None:
        shuffle.seed()
        neurons.seed()
    else:
        shuffle.manual_seed(int(seed))
        neurons.manual_seed(int(seed) + 1)

    x_all = data.x_train.to(device=dev, dtype=dtype)
    y_all = data.y_train.to(dev)
    t_all = data.task_train.to(dev) if isinstance(data, MultiTaskDataset) else None

    history = History(
        task_names=list(data.task_names) if isinstance(data, MultiTaskDataset) else [],
        settings={
            "data": data.name,
            "epochs": epochs,
            "lr": lr,
            "weight_decay": weight_decay,
            "batch_size": batch_size,
            "optimizer": type(optimizer).__name__,
            "adapt": asdict(adapt) if adapt else None,
            "width_schedule": asdict(width_schedule) if width_schedule else None,
            "seed": seed,
        },
    )
    # every epoch's task weights, validated before any training
    weights = [_task_weights(data, task_weights, e) for e in range(1, epochs + 1)]
    first_w = weights[0]
    train0 = evaluate(model, data, "train", task_weights=first_w or None)
    _record(history, model, data, 0, train0["loss"], train0["accuracy"], first_w, [], 0.0, 0.0)

    steps = sum(math.ceil(_active(t_all, w, x_all.shape[0]) / batch_size) for w in weights)
    progress = _Progress(verbose, epochs, steps)
    try:
        for epoch in range(1, epochs + 1):
            w = weights[epoch - 1]
            t0 = time.perf_counter()
            rows = torch.randperm(x_all.shape[0], generator=shuffle).to(dev)
            if t_all is not None:
                active = torch.tensor([wt > 0 for wt in w], device=dev)[t_all[rows]]
                rows = rows[active]
                if rows.numel() == 0:
                    raise IsoproofError(
                        f"expected a task with weight > 0 at epoch {epoch}, got {w}"
                    )
            model.train()
            widths_now = widths_of(model)  # resizes happen between epochs only
            loss_sum, correct, seen = 0.0, 0, 0
            for step, idx in enumerate(rows.split(batch_size)):
                xb, yb = x_all[idx], y_all[idx]
                logits = model(xb)
                loss, pred = _loss(data, logits, yb, None if t_all is None else t_all[idx], w)
                penalty = _penalty(model)
                total = loss if penalty is None else loss + penalty
                if not torch.isfinite(total):
                    raise NonFiniteError(
                        f"expected a finite loss, got {float(total)} at epoch {epoch} step "
                        f"{step + 1} (try a smaller lr)"
                    )
                optimizer.zero_grad(set_to_none=True)
                total.backward()
                optimizer.step()
                loss_sum += float(loss.detach()) * idx.numel()
                correct += int((pred == yb).sum())
                seen += idx.numel()
                progress.step(
                    f"{epoch}/{epochs}",
                    f"loss {loss_sum / seen:.3f} acc {correct / seen:.1%} widths {widths_now}",
                )
            t1 = time.perf_counter()
            receipts: list[Receipt] = []
            if adapt is not None:
                receipts = adapt(model, epoch, optimizer, neurons)  # type: ignore[arg-type]
            elif width_schedule is not None:
                receipts = width_schedule(
                    model,  # type: ignore[arg-type]
                    epoch,
                    start_hidden,
                    epochs,
                    optimizer,
                    neurons,
                )
            t2 = time.perf_counter() if receipts else t1
            _record(
                history,
                model,
                data,
                epoch,
                loss_sum / seen,
                correct / seen,
                w,
                receipts,
                t1 - t0,
                t2 - t1,
            )
            progress.epoch_done(
                f"epoch {epoch}/{epochs}: loss {history.train_loss[-1]:.4f}, train "
                f"{history.train_accuracy[-1]:.1%}, test {history.test_accuracy[-1]:.1%}, widths "
                f"{history.widths[-1]}, {t1 - t0:.2f} s + resize {t2 - t1:.3f} s"
            )
            if any([cb(epoch, model, history) is True for cb in callbacks]):  # call them all
                break
    finally:
        progress.close()
    return history


def _active(task: torch.Tensor | None, weights: list[float], n: int) -> int:
    """Training rows visited in an epoch: those of tasks with weight > 0 (all rows otherwise)."""
    if task is None:
        return n
    return int(sum(int((task == k).sum()) for k, w in enumerate(weights) if w > 0))


def _record(
    history: History,
    model: nn.Module,
    data: Data,
    epoch: int,
    train_loss: float,
    train_accuracy: float,
    weights: list[float],
    receipts: list[Receipt],
    seconds: float,
    resize_seconds: float,
) -> None:
    test = evaluate(model, data, "test", task_weights=weights or None)
    history.epoch.append(epoch)
    history.train_loss.append(float(train_loss))
    history.train_accuracy.append(float(train_accuracy))
    history.test_loss.append(test["loss"])
    history.test_accuracy.append(test["accuracy"])
    history.task_weights.append(list(weights))
    history.task_accuracy.append(test["task_accuracy"])
    history.widths.append(list(widths_of(model)))
    history.parameters.append(count_parameters(model))
    history.singular_values.append([s.tolist() for s in layer_spectra(model)])
    history.psi_abs_sum.append(_psi_abs_sum(model))
    history.resizes.append([str(r) for r in receipts])
    history.epoch_seconds.append(float(seconds))
    history.resize_seconds.append(float(resize_seconds))
