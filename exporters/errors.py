"""Exceptions raised by :mod:`exporters`.

Both are :class:`isoproof.IsoproofError` subclasses (hence ``ValueError``), so the CLI prints
them as one line and exits with status 2. Messages follow the pattern "expected X, got Y".
"""

from __future__ import annotations

from isoproof.exceptions import IsoproofError, MissingExtraError

__all__ = ["ExportError", "RuntimeUnavailableError", "VerificationError"]


class ExportError(IsoproofError):
    """An export or conversion failed, or produced a file that does not pass the checks."""


class VerificationError(ExportError):
    """An exported file disagrees with its source model, holds NaN/Inf, or uses disallowed ops.

    ``report`` is the failing :class:`~exporters.verify.VerificationReport` (or ``None``).
    """

    def __init__(self, message: str, report: object | None = None) -> None:
        super().__init__(message)
        self.report = report


class RuntimeUnavailableError(ExportError, MissingExtraError):
    """A runtime back-end is not installed here (OpenVINO, or node / Chromium / the npm packages
    of the browser back-end); the message says what to install and how."""
