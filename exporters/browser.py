"""The browser back-end: onnxruntime-web (WASM, one thread) in headless Chromium.

A :class:`BrowserSession` starts ``node exporters/web/driver.mjs`` once; the driver launches
Debian's ``/usr/bin/chromium`` through ``puppeteer-core`` (``executablePath``; no browser
download), serves ``runner.html``, onnxruntime-web's ``dist/`` files and the model from a static
server on ``127.0.0.1`` (an ephemeral port) and answers JSON requests on stdin/stdout. The npm
packages are pinned by ``exporters/web/package-lock.json`` and installed by ``npm ci`` (``make
web``); nothing is fetched at run time, and the page reports any request that leaves the local
server as an error.

Arrays cross the pipe as base64 of their little-endian bytes, with their dims and dtype, so the
page runs exactly the float32 (or float64) rows that :func:`exporters.verify_onnx` gives every
other back-end.

Example::

    >>> with BrowserSession() as browser:  # doctest: +SKIP
    ...     y = browser.run("m.onnx", {"x": np.zeros((2, 64), np.float32)})["x"]
"""

from __future__ import annotations

import atexit
import base64
import json
import os
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ExportError, RuntimeUnavailableError

__all__ = ["WEB_DIR", "BrowserSession", "browser_problem", "shared_session"]

WEB_DIR = Path(os.environ.get("ISOPROOF_WEB_DIR", Path(__file__).resolve().parent / "web"))
"""The folder with ``package-lock.json``, ``driver.mjs``, ``runner.html`` and ``node_modules``."""
CHROMIUM = os.environ.get("ISOPROOF_CHROMIUM", "/usr/bin/chromium")
_INSTALL = "install them with `make web` (apt-get install chromium; npm ci in exporters/web)"


def browser_problem() -> str | None:
    """Why the browser back-end cannot run here (``None`` if node, chromium and the npm packages
    are all present): the reason a test skips with."""
    if shutil.which("node") is None:
        return f"expected node on PATH for the browser runtime, got none: {_INSTALL}"
    if not Path(CHROMIUM).is_file():
        return f"expected Chromium at {CHROMIUM} for the browser runtime, got none: {_INSTALL}"
    for package in ("onnxruntime-web", "puppeteer-core"):
        if not (WEB_DIR / "node_modules" / package / "package.json").is_file():
            where = WEB_DIR / "node_modules"
            return f"expected the npm package {package} in {where}, got none: {_INSTALL}"
    return None


class BrowserSession:
    """One headless Chromium with onnxruntime-web, kept open across requests (start it once).

    Raises:
        RuntimeUnavailableError: node, Chromium or the npm packages are missing.
        ExportError: the driver failed to start or a request failed (the page's errors attached).
    """

    def __init__(self, *, timeout: float = 120.0) -> None:
        problem = browser_problem()
        if problem:
            raise RuntimeUnavailableError(problem)
        self.timeout = timeout
        self._lock = threading.Lock()
        self._next = 0
        self._proc = subprocess.Popen(
            ["node", str(WEB_DIR / "driver.mjs")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=WEB_DIR,
            env={**os.environ, "ISOPROOF_CHROMIUM": CHROMIUM},
        )
        hello = self._read()
        if not hello.get("ready"):
            raise ExportError(f"expected the browser driver to start, got {hello}")
        self.chromium: str = hello["chromium"]
        self.ort_version: str = hello["ort"]

    # ------------------------------------------------------------------ protocol
    def _read(self) -> dict[str, Any]:
        line = self._proc.stdout.readline() if self._proc.stdout else ""
        if not line:
            err = self._proc.stderr.read() if self._proc.stderr and self._proc.poll() else ""
            tail = err.strip().splitlines()[-1][:300] if err.strip() else "no output"
            raise ExportError(f"expected a reply from the browser driver, got it exiting: {tail}")
        return json.loads(line)

    def request(self, op: str, **fields: Any) -> Any:
        """Send one request to the driver and return its ``result`` (raises on ``ok: false``)."""
        with self._lock:
            if self._proc.poll() is not None:
                raise ExportError("expected a running browser driver, got it closed")
            self._next += 1
            assert self._proc.stdin is not None
            self._proc.stdin.write(json.dumps({"id": self._next, "op": op, **fields}) + "\n")
            self._proc.stdin.flush()
            reply = self._read()
        if not reply.get("ok"):
            raise ExportError(f"browser {op} failed: {reply.get('error')}")
        return reply["result"]

    # ------------------------------------------------------------------ models
    def run(
        self,
        model: str | os.PathLike[str],
        sets: dict[str, np.ndarray],
        *,
        latency: dict[str, list[int]] | None = None,
        runs: int = 50,
    ) -> dict[str, Any]:
        """Outputs of the model's first output on each input array (same dtype and dims as
        given), and with ``latency={"batch1": dims, ...}`` the median seconds per call of each,
        timed inside the page (key ``"latency"``)."""
        dtypes = {np.dtype(x.dtype).name for x in sets.values()}
        dtype = dtypes.pop() if len(dtypes) == 1 else "float32"
        payload = [_encode(name, x) for name, x in sets.items()]
        lat = None if not latency else {"dims": latency, "dtype": dtype, "runs": int(runs)}
        result = self.request("run", model=str(Path(model).resolve()), sets=payload, latency=lat)
        out: dict[str, Any] = {o["name"]: _decode(o) for o in result["outputs"]}
        out["latency"] = result["latency"]
        return out

    # ------------------------------------------------------------------ pages
    def mount(self, folder: str | os.PathLike[str]) -> str:
        """Serve ``folder`` on the local server; returns its URL (ending in ``/``)."""
        return self.request("mount", dir=str(Path(folder).resolve()))["url"]

    def goto(self, url: str, *, wait: str | None = None) -> None:
        self.request("goto", url=url, wait=wait)

    def draw(self, selector: str, strokes: list[list[tuple[float, float]]]) -> None:
        """Draw ``strokes`` (points as fractions of the element's box) with real pointer input."""
        self.request("draw", selector=selector, strokes=strokes)

    def evaluate(self, expression: str, *, wait: str | None = None) -> Any:
        return self.request("evaluate", expression=expression, wait=wait)

    def screenshot(self, path: str | os.PathLike[str], *, width: int = 900, height: int = 700):
        out = str(Path(path).resolve())
        return self.request("screenshot", path=out, width=width, height=height)

    def close(self) -> None:
        if self._proc.poll() is None:
            try:
                assert self._proc.stdin is not None
                self._proc.stdin.write(json.dumps({"op": "close"}) + "\n")
                self._proc.stdin.flush()
                self._proc.wait(timeout=20)
            except (OSError, subprocess.TimeoutExpired):
                self._proc.kill()
                self._proc.wait()
        for stream in (self._proc.stdin, self._proc.stdout, self._proc.stderr):
            if stream is not None:
                stream.close()

    def __enter__(self) -> BrowserSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_SHARED: list[BrowserSession] = []


def shared_session() -> BrowserSession:
    """The process's one :class:`BrowserSession`, started on first use, closed at exit."""
    if not _SHARED or _SHARED[0]._proc.poll() is not None:
        _SHARED[:] = [BrowserSession()]
        atexit.register(_SHARED[0].close)
    return _SHARED[0]


def _encode(name: str, x: np.ndarray) -> dict[str, Any]:
    dtype = np.dtype(x.dtype).name
    if dtype not in ("float32", "float64"):
        raise ExportError(f"expected float32 or float64 inputs for the browser, got {dtype}")
    data = np.ascontiguousarray(x, dtype=np.dtype(dtype).newbyteorder("<"))
    return {
        "name": name,
        "dims": list(x.shape),
        "dtype": dtype,
        "b64": base64.b64encode(data.tobytes()).decode(),
    }


def _decode(o: dict[str, Any]) -> np.ndarray:
    dtype = {"float32": "<f4", "float64": "<f8"}.get(o["dtype"])
    if dtype is None:
        raise ExportError(f"expected a float32/float64 output from the browser, got {o['dtype']}")
    return np.frombuffer(base64.b64decode(o["b64"]), dtype=dtype).reshape(o["dims"])
