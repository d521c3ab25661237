"""Exceptions raised by isoproof.

Every error a user can cause is a subclass of :class:`IsoproofError`, itself a ``ValueError``, so
``except ValueError`` keeps working. Messages follow the pattern "expected X, got Y". An operation
that raises leaves the model (and the optimizer passed to it) exactly as it was.
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "IsoproofError",
    "LayerIndexError",
    "MissingExtraError",
    "MissingGainError",
    "NonFiniteError",
    "NotCollapsibleError",
    "NotDiagonalisableError",
    "NotEquivariantError",
    "NotIsotropicError",
    "NotOrthogonalError",
    "ReplicaMismatchError",
    "StaleWrapperError",
    "UnsupportedOptimizerError",
    "UnsynchronisedError",
    "WidthError",
    "one_line",
]


class IsoproofError(ValueError):
    """Base class of every error isoproof raises on bad input."""


class LayerIndexError(IsoproofError, IndexError):
    """A layer index is outside the range the operation accepts."""


class WidthError(IsoproofError):
    """A width is invalid, or an operation would leave a layer with no neuron."""


class NotOrthogonalError(IsoproofError):
    """A matrix passed as a change of basis is not orthogonal within tolerance."""


class NotIsotropicError(IsoproofError, TypeError):
    """The model is not an :class:`~isoproof.IsotropicMLP` (its symmetries are not known)."""


class NotEquivariantError(IsoproofError):
    """A layer that does not commute with channel rotations (max pooling, grouped convolution)."""


class NotDiagonalisableError(IsoproofError):
    """Full diagonalisation asked of a map that no single input rotation can diagonalise (a
    convolution with more than one spatial tap)."""


class NonFiniteError(IsoproofError):
    """A parameter or input holds NaN or Inf."""


class UnsupportedOptimizerError(IsoproofError, TypeError):
    """An optimizer whose state isoproof cannot transform (only SGD, Adam and AdamW are)."""


class MissingGainError(IsoproofError):
    """Expectation-mode pruning (``psi="none"``) needs a recorded mean gain that is absent."""


class MissingExtraError(IsoproofError, ImportError):
    """An optional dependency is not installed (the message names the ``pip install`` extra)."""


class CheckpointError(IsoproofError):
    """A checkpoint file is missing, truncated, corrupted or inconsistent."""


class UnsynchronisedError(IsoproofError):
    """A structural operation on a model replicated by ``DistributedDataParallel`` outside
    :func:`isoproof.distributed.synchronise` (the replicas would drift apart silently)."""


class StaleWrapperError(UnsynchronisedError):
    """A ``DistributedDataParallel`` wrapper used after a structural change replaced the
    parameters it synchronises (use the one :func:`isoproof.distributed.synchronise` returned)."""


class ReplicaMismatchError(IsoproofError):
    """The replicas of a model (parameters or optimiser moments) differ across processes."""


def one_line(error: BaseException, limit: int | None = None) -> str:
    r"""The message of ``error`` on one line (whitespace collapsed; the type name if empty),
    cut to ``limit`` characters if given: how the CLI and the exporters report any error.

    Example::

        >>> one_line(ValueError("expected a file,\n  got a folder"))
        'expected a file, got a folder'
        >>> one_line(RuntimeError("x" * 50), limit=10)
        'xxxxxxx...'
    """
    text = " ".join(str(error).split()) or type(error).__name__
    return text if limit is None or len(text) <= limit else text[: max(0, limit - 3)] + "..."


class NotCollapsibleError(IsoproofError, TypeError):
    """The model cannot be collapsed (:func:`isoproof.collapse`): not an :class:`IsotropicMLP`
    (e.g. a convolutional net, whose spatial mixing of the gains breaks the unrolling), or an
    affine map that is neither an ``nn.Linear`` nor a :class:`DiagonalLinear` (``NGCLinear``)."""
