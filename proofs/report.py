"""Proof-run results: the console table, the JSON report and JUnit XML for CI systems.

JSON shape::

    {"ok": bool, "seconds": float, "cpu_seconds": float,
     "claims": [{"id", "statement", "section", "kind": "claim" | "control",
                 "holds": bool, "residual": str, "seconds": float, "status": str}]}

A control is expected to have ``holds: false`` with ``status: "not proved"`` (its claim's own
proof path, with one thing broken, must fail). ``status`` is one of ``proved`` / ``not proved``
(claims and controls), ``holds`` (a control that was proved), ``timeout`` or ``error``
(either). ``ok`` is true iff every claim is ``proved`` and every control ``not proved``. Files are
written atomically (temporary file, then ``os.replace``).
"""

from __future__ import annotations

import json
import os
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["RESIDUAL_CHARS", "Report", "Result", "shorten_residual", "write_atomic"]

#: Residuals are shortened to this many characters in reports.
RESIDUAL_CHARS = 200


@dataclass(frozen=True)
class Result:
    """The outcome of one claim or control."""

    id: str
    statement: str
    section: str
    kind: str
    holds: bool
    residual: str
    seconds: float
    status: str

    @property
    def passed(self) -> bool:
        """A claim passes when proved, a control when its broken proof is not proved."""
        return self.status == ("proved" if self.kind == "claim" else "not proved")


@dataclass(frozen=True)
class Report:
    """All results of a run and its wall-clock time."""

    results: tuple[Result, ...]
    seconds: float
    #: CPU seconds of the process during the run (``time.process_time``).
    cpu_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """Every claim proved and no control proved (an empty run is not ok)."""
        return bool(self.results) and all(r.passed for r in self.results)

    def to_dict(self) -> dict[str, object]:
        """The documented JSON shape."""
        return {
            "ok": self.ok,
            "seconds": round(self.seconds, 3),
            "cpu_seconds": round(self.cpu_seconds, 3),
            "claims": [asdict(r) | {"seconds": round(r.seconds, 3)} for r in self.results],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"

    def to_junit(self) -> str:
        """JUnit XML: one ``testcase`` per claim; a failed claim or a proved control fails."""
        failures = sum(1 for r in self.results if not r.passed and r.status != "error")
        errors = sum(1 for r in self.results if r.status == "error")
        suites = ET.Element("testsuites", name="proofs", time=f"{self.seconds:.3f}")
        suite = ET.SubElement(
            suites,
            "testsuite",
            name="proofs",
            tests=str(len(self.results)),
            failures=str(failures),
            errors=str(errors),
            skipped="0",
            time=f"{self.seconds:.3f}",
        )
        for r in self.results:
            case = ET.SubElement(
                suite,
                "testcase",
                classname=f"proofs.{r.kind}",
                name=r.id,
                time=f"{r.seconds:.3f}",
            )
            if not r.passed:
                tag = "error" if r.status == "error" else "failure"
                expected = "proved" if r.kind == "claim" else "not proved"
                problem = ET.SubElement(
                    case, tag, message=f"expected {expected}, got {r.status}", type=r.status
                )
                problem.text = f"residual: {r.residual}"
            out = ET.SubElement(case, "system-out")
            out.text = f"{r.section}: {r.statement}\nstatus: {r.status}\nresidual: {r.residual}"
        ET.indent(suites)
        return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"

    def table(self, residual_width: int = 48) -> str:
        """Plain-text table: claim, kind, status, residual, seconds; then a summary line."""
        id_width = max([len("claim"), *(len(r.id) for r in self.results)])
        lines = [
            f"{'claim':<{id_width}}  {'kind':<7}  {'status':<10}  "
            f"{'residual':<{residual_width}}  {'seconds':>7}"
        ]
        lines.append("-" * len(lines[0]))
        for r in self.results:
            residual = _shorten(r.residual, residual_width)
            mark = "" if r.passed else "  <-- FAIL"
            lines.append(
                f"{r.id:<{id_width}}  {r.kind:<7}  {r.status:<10}  "
                f"{residual:<{residual_width}}  {r.seconds:7.2f}{mark}"
            )
        claims = [r for r in self.results if r.kind == "claim"]
        controls = [r for r in self.results if r.kind == "control"]
        lines.append(
            f"{sum(r.passed for r in claims)}/{len(claims)} claims proved, "
            f"{sum(r.passed for r in controls)}/{len(controls)} controls not proved "
            f"in {self.seconds:.1f} s ({self.cpu_seconds:.1f} s CPU): "
            f"{'OK' if self.ok else 'FAILED'}"
        )
        return "\n".join(lines)


def _shorten(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def shorten_residual(text: str) -> str:
    """One-line residual of at most :data:`RESIDUAL_CHARS` characters."""
    return _shorten(text, RESIDUAL_CHARS)


def report_path_problem(path: str | os.PathLike[str], flag: str) -> str | None:
    """Why a report cannot be written at ``path`` (``None`` if it can), checked before any proof
    runs: a directory, or a folder that cannot be created (a file on the way) or written.

    The proofs' own copy of :func:`isoproof.files.check_folder` (see :func:`write_atomic`: the
    layering rule keeps ``proofs/`` apart from the core), with its messages;
    ``tests/test_proofs.py`` compares the two on the same paths.
    """
    target = Path(path)
    if os.path.isdir(target):
        return f"expected a file path for {flag}, got a directory ({str(target)!r})"
    folder = target.parent
    if os.path.exists(folder) and not os.path.isdir(folder):
        return f"expected a folder for {flag}, got the file {str(folder)!r}"
    existing = next(p for p in (folder, *folder.parents) if os.path.exists(p) or p == p.parent)
    if not os.path.isdir(existing):
        reason = "a file"
    elif os.access(existing, os.W_OK | os.X_OK):
        return None
    else:
        read_only = bool(os.statvfs(existing).f_flag & os.ST_RDONLY)
        reason = "read-only file system" if read_only else "permission denied"
    return f"expected a writable folder for {flag}, got {str(existing)!r} ({reason})"


def write_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` atomically, creating parent directories.

    The proofs' own copy of :func:`isoproof.files.atomic_write_text`, on purpose: ``proofs/``
    imports neither torch nor the core (the layering rule, ``tests/test_architecture.py``), so
    ``python -m proofs`` runs with SymPy alone and cannot import :mod:`isoproof.files`.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; reports are ordinary CI artefacts
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
