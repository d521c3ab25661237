"""Training checkpoints: a run that stops and resumes continues bit for bit.

A training checkpoint is an :func:`isoproof.save` file (the same format registry, config, header
checks and SHA-256; :func:`isoproof.load` reads the model out of it) that also holds what
:func:`isoproof.train.fit` needs to continue exactly where it stopped (``docs/method.md`` §6-§7):

* the optimiser state keyed by parameter *name* (:func:`isoproof.optim.named_state`): the
  moments, ``step`` and every group's hyper-parameters; names survive every resize;
* the states of the generators that decide what happens next (the data order, the new neurons'
  outgoing weights), as ``uint8`` tensors;
* the epoch reached, the history so far, and what the run fixed when it started.

Tensors: ``train/optimizer/<parameter>/<key>``, ``train/generator/<name>`` and ``train/history``
(the history as UTF-8 JSON bytes: it grows with the run, the header must not); everything else is
the JSON ``training`` entry of the metadata. The digest covers all of it. :func:`read_checkpoint`
treats the file as untrusted: the header is checked against the model and the optimiser before
any tensor is read, and nothing changes until :meth:`TrainingState.restore`, which cannot fail.

Example::

    >>> model = IsotropicMLP([4, 6, 3], dtype=torch.float64)
    >>> opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    >>> model(torch.randn(5, 4, dtype=torch.float64)).sum().backward()
    >>> opt.step()
    >>> g = torch.Generator().manual_seed(0)
    >>> path = write_checkpoint(tmp_path / "run.safetensors", model, opt, epoch=1,
    ...                         history={"epoch": [0, 1]}, generators={"order": g})
    >>> first = torch.rand(3, generator=g)
    >>> again = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    >>> state = read_checkpoint(path, model, again, generators=["order"])
    >>> state.restore(again, {"order": g})
    >>> state.epoch, torch.equal(torch.rand(3, generator=g), first)
    (1, True)
    >>> w = model.linears[0].weight
    >>> torch.equal(again.state[w]["momentum_buffer"], opt.state[w]["momentum_buffer"])
    True
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .exceptions import CheckpointError
from .io import (
    TRAINING_PREFIX,
    Specs,
    _fail,
    _format_of,
    _read_header,
    _write,
    check_specs,
    model_specs,
    read_checked,
)
from .optim import check_named_state, named_state, named_state_dict

__all__ = [
    "TRAINING_FORMAT",
    "TrainingState",
    "check_header",
    "check_saveable",
    "read_checkpoint",
    "write_checkpoint",
]

TRAINING_FORMAT = "isoproof.training/1"
_OPT = f"{TRAINING_PREFIX}optimizer/"
_GEN = f"{TRAINING_PREFIX}generator/"
_HISTORY = f"{TRAINING_PREFIX}history"
_GENERATOR_BYTES = int(torch.Generator().get_state().numel())  # a CPU generator's state


@dataclass(frozen=True)
class TrainingState:
    """A checked training checkpoint, not yet applied (:func:`read_checkpoint`).

    ``history`` is the JSON the writer passed, ``run`` the writer's other JSON.
    """

    path: Path
    epoch: int
    history: dict[str, Any]
    run: dict[str, Any]
    optimizer_state: dict[str, Any]
    generators: dict[str, torch.Tensor]

    def restore(
        self, optimizer: torch.optim.Optimizer, generators: Mapping[str, torch.Generator]
    ) -> None:
        """Load the optimiser state into ``optimizer`` (the one :func:`read_checkpoint` checked)
        and set each generator of ``generators`` to its stored state."""
        optimizer.load_state_dict(self.optimizer_state)
        for name, generator in generators.items():
            generator.set_state(self.generators[name])


def check_saveable(model: nn.Module, optimizer: torch.optim.Optimizer | None) -> None:
    """Raise now what :func:`write_checkpoint` would raise after an epoch's work.

    Raises:
        NotIsotropicError: the model's class has no registered format (:func:`isoproof.save`).
        UnsupportedOptimizerError: the optimiser is not SGD, Adam or AdamW, or it holds a
            parameter that is not the model's.
        IsoproofError: a hyper-parameter JSON cannot store (``lr=torch.tensor(1e-3)``).
    """
    _format_of(model)
    if optimizer is not None:  # the class, the parameters and the hyper-parameters
        named_state(optimizer, model)  # as write_checkpoint describes them


def write_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    epoch: int,
    history: Mapping[str, Any],
    generators: Mapping[str, torch.Generator],
    run: Mapping[str, Any] | None = None,
) -> Path:
    """Write a training checkpoint to ``path`` atomically (one process; under several,
    :func:`isoproof.distributed.write_on_rank0`).

    Args:
        path: the file (safetensors); replaced only once the new one is complete.
        model: a model of a registered class (:func:`isoproof.io.register_format`).
        optimizer: an SGD, Adam or AdamW over ``model``'s parameters.
        epoch: the epoch reached.
        history: JSON-ready record of the run so far.
        generators: CPU generators by name, whose states are stored.
        run: other JSON-ready values the run needs to continue.

    Returns:
        ``path``.

    Raises:
        NotIsotropicError: the model's class is not registered.
        UnsupportedOptimizerError: the optimiser is not supported or not over ``model``.
        NonFiniteError: a parameter, buffer or moment holds NaN/Inf (nothing is written).

    Examples:
        See the module docstring.
    """
    moments, description = named_state(optimizer, model)
    tensors = {f"{_OPT}{k}": v for k, v in moments.items()}
    tensors |= {f"{_GEN}{name}": g.get_state() for name, g in generators.items()}
    text = json.dumps(dict(history)).encode()
    tensors[_HISTORY] = torch.frombuffer(bytearray(text), dtype=torch.uint8)
    training = {
        "format": TRAINING_FORMAT,
        "epoch": int(epoch),
        "optimizer": description,
        "generators": sorted(generators),
        "run": dict(run or {}),
    }
    return _write(model, path, (tensors, json.dumps(training)))


def check_header(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Check a training checkpoint's header alone, before slow work such as loading a data set:
    the file, its tensors' byte ranges and the ``training`` entry (no tensor is read; the model,
    the optimiser, the generators' names and the digest are :func:`read_checkpoint`'s).

    Args:
        path: a file written by :func:`write_checkpoint` (untrusted).

    Returns:
        The ``training`` entry (JSON; its ``epoch`` is an int >= 0).

    Raises:
        CheckpointError: a missing or damaged file, a model file instead of a training
            checkpoint, or a malformed training entry (one line, "expected X, got Y").

    Examples:
        >>> model = IsotropicMLP([4, 6, 3], dtype=torch.float64)
        >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
        >>> path = write_checkpoint(tmp_path / "run.safetensors", model, opt, epoch=2,
        ...                         history={}, generators={})
        >>> check_header(path)["epoch"]
        2
    """
    path = Path(path)
    return _training(path, _read_header(path)[0], None)


def _training(
    path: Path, meta: Mapping[str, str], generators: Sequence[str] | None
) -> dict[str, Any]:
    """The checked ``training`` entry of the metadata (``generators=None``: any names)."""
    if "training" not in meta:
        raise CheckpointError(
            f"expected a training checkpoint (written by fit(checkpoint=...)) at {path}, "
            "got a model file"
        )
    training = json.loads(meta["training"])
    keys = {"format", "epoch", "optimizer", "generators", "run"}
    if not isinstance(training, dict) or set(training) != keys:
        got = sorted(training) if isinstance(training, dict) else type(training).__name__
        raise _fail(path, f"expected the training entries {sorted(keys)}, got {got}")
    if training["format"] != TRAINING_FORMAT:
        raise _fail(
            path, f"expected the training format {TRAINING_FORMAT}, got {training['format']!r}"
        )
    epoch = training["epoch"]
    if type(epoch) is not int or epoch < 0:
        raise _fail(path, f"expected an epoch >= 0, got {epoch!r}")
    names = training["generators"]
    if generators is None and not (
        isinstance(names, list) and all(isinstance(n, str) for n in names)
    ):
        raise _fail(path, f"expected a list of generator names, got {names!r:.80}")
    if generators is not None and names != sorted(generators):
        raise _fail(
            path, f"expected the generators {sorted(generators)}, got {training['generators']!r}"
        )
    if not isinstance(training["run"], dict):
        raise _fail(path, f"expected a dict of run values, got {training['run']!r:.80}")
    return training


def _expected(
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    meta: Mapping[str, str],
    specs: Specs,
    training: Mapping[str, Any],
) -> None:
    """Check the header against the model and the optimiser (no tensor read yet)."""
    config = json.dumps(model.config())  # type: ignore[operator]
    if meta["format"] != _format_of(model) or meta["config"] != config:
        raise _fail(
            path,
            f"expected a checkpoint of this model ({_format_of(model)}, config {config:.200}), "
            f"got {meta['format']} with config {meta['config']:.200} (load the model with "
            "isoproof.load(path) to resume)",
        )
    check_specs(path, model.state_dict(), model_specs(meta, specs), "the model")
    opt_specs = {k[len(_OPT) :]: v for k, v in specs.items() if k.startswith(_OPT)}
    try:
        want = check_named_state(optimizer, model, training["optimizer"], opt_specs)
    except CheckpointError as e:
        raise _fail(path, str(e)) from None
    expected = {f"{_OPT}{k}": v for k, v in want.items()}
    expected |= {f"{_GEN}{g}": (torch.uint8, (_GENERATOR_BYTES,)) for g in training["generators"]}
    history = specs.get(_HISTORY, (torch.uint8, (0, 0)))
    expected[_HISTORY] = (torch.uint8, history[1] if len(history[1]) == 1 else (0,))
    train_specs = {k: v for k, v in specs.items() if k.startswith(TRAINING_PREFIX)}
    check_specs(path, expected, train_specs, "the optimiser, generators and history")


def _same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bitwise equality (``NaN`` entries equal, as in the unused gain means; ``-0.0 != 0.0``),
    without hashing either tensor."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    raw = [t.detach().cpu().contiguous().reshape(-1).view(torch.uint8) for t in (a, b)]
    return torch.equal(*raw)


def read_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    generators: Sequence[str],
) -> TrainingState:
    """Read and check a training checkpoint for ``model`` and ``optimizer``; change nothing.

    Args:
        path: a file written by :func:`write_checkpoint` (untrusted).
        model: the model the checkpoint holds, e.g. ``isoproof.load(path)`` (the same config and
            the same bits; after resizes the constructor's model is not it).
        optimizer: the optimiser to continue with: the same class and groups over the same
            parameter names.
        generators: the names of the generators the checkpoint must hold.

    Returns:
        The :class:`TrainingState`; :meth:`TrainingState.restore` applies it.

    Raises:
        CheckpointError: a missing or damaged file, a model file instead of a training
            checkpoint, another model or other weights, an optimiser state of another class,
            groups or shape, a missing state key, a generator state torch refuses, or a history
            that is not a JSON object (one line, "expected X, got Y").

    Examples:
        See the module docstring.
    """
    path = Path(path)
    held: dict[str, Any] = {}

    def check(meta: dict[str, str], specs: Specs) -> None:
        held["training"] = _training(path, meta, generators)
        _expected(path, model, optimizer, meta, specs, held["training"])

    meta, tensors = read_checked(path, check)
    training = held["training"]
    saved = model_specs(meta, tensors)
    current = {k: v.detach() for k, v in model.state_dict().items()}
    if saved.keys() != current.keys() or not all(_same_bits(saved[k], current[k]) for k in saved):
        raise _fail(path, "expected the model this checkpoint holds, got other weights "
                          "(load it with isoproof.load(path) to resume)")  # fmt: skip
    moments = {k[len(_OPT) :]: v for k, v in tensors.items() if k.startswith(_OPT)}
    try:
        state = named_state_dict(optimizer, model, training["optimizer"], moments)
    except CheckpointError as e:
        raise _fail(path, str(e)) from None
    states = {g: tensors[f"{_GEN}{g}"] for g in generators}
    for name, value in states.items():
        try:
            torch.Generator().set_state(value)
        except (RuntimeError, ValueError) as e:
            raise _fail(
                path, f"expected a valid state of generator {name!r}, got one torch refuses ({e})"
            ) from None
    try:
        history = json.loads(tensors[_HISTORY].numpy().tobytes().decode())
    except (ValueError, RecursionError) as e:  # bad UTF-8 or JSON, a > 4300-digit int; deep
        raise _fail(path, f"expected the history as JSON, got unreadable bytes ({e})") from None
    if not isinstance(history, dict):
        raise _fail(path, f"expected the history as a JSON object, got {type(history).__name__}")
    return TrainingState(path, training["epoch"], history, training["run"], state, states)
