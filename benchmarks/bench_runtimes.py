"""Every runtime back-end on the demo's model: parity and latency, fp32 and int8 (GitHub issue 15).

Model: the demo's (``isoproof demo``: digits, scaffold buffer, ``prune_below(0.1)`` +
``sparsify``), read from ``--model`` (default ``out/demo/model.safetensors``; without it the demo
is run, without the proofs, into a temporary folder). It is exported to float32 and to dynamic
int8 (:func:`exporters.quantize_int8`, calibrated on the digits test split), and each file is
verified by :func:`exporters.verify_onnx` in every runtime of :data:`exporters.BACKENDS`
(onnxruntime CPU, the ONNX reference evaluator, OpenVINO CPU, onnxruntime-web in headless
Chromium) on the same input sets (random, the digits test split, zeros, norms 1e-12..1e4, batch 1
and 7). Reported per file and runtime: max |error| vs float64 torch and vs float32 torch, test
accuracy, and median latency at batch 1 and 64 (``--runs`` calls: interleaved rounds in Python,
blocks of calls timed inside the page for the browser), all single-threaded.

It also writes the web demo for that model and a screenshot of it with a drawn 7
(``docs/web-demo.png``), and refreshes the runtime tables of ``docs/export.md`` and ``README.md``.

Run: ``python -m benchmarks runtimes`` (needs ``make web`` and the ``edge`` extra).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from isoproof.exporters import BACKENDS, export_onnx, quantize_int8, verify_onnx
from isoproof.exporters.browser import shared_session

import isoproof as ip
from isoproof.table import markdown_table

from ._common import ROOT, record, replace_section

DEFAULT_MODEL = ROOT / "out" / "demo" / "model.safetensors"
SCREENSHOT = ROOT / "docs" / "web-demo.png"
SEVEN = [[(0.2, 0.15), (0.8, 0.15)], [(0.8, 0.15), (0.55, 0.5), (0.4, 0.88)]]


def _model(path: Path | None, work: Path) -> tuple[Path, ip.IsotropicMLP]:
    if path is None and DEFAULT_MODEL.is_file():
        path = DEFAULT_MODEL
    if path is None:
        from isoproof.app.demo import run_demo

        run_demo(work / "demo", prove=False, latency_runs=20)
        path = work / "demo" / "model.safetensors"
    return path, ip.load(path)


def _rows(report: Any, kind: str) -> list[dict[str, Any]]:
    rows = []
    for name, r in report.runtimes().items():
        rows.append(
            {
                "file": kind,
                "runtime": name,
                "max_abs_float64": r["max_abs"],
                "max_abs_torch": r["max_abs_torch"],
                "accuracy": report.accuracy.get(name),
                "ms_batch1": 1e3 * r["seconds_batch1"],
                "ms_batch64": 1e3 * r["seconds_batch64"],
                "ok": report.ok,
            }
        )
    return rows


def _screenshot(checkpoint: Path, work: Path) -> dict[str, Any]:
    from isoproof.app.cli import main as cli

    folder = work / "web"
    if cli(["export", str(checkpoint), "--web", str(folder)]) != 0:
        raise RuntimeError("isoproof export --web failed")
    browser = shared_session()
    browser.goto(browser.mount(folder) + "index.html", wait="window.isoproofDemo.ready")
    browser.draw("#pad", SEVEN)
    state = browser.evaluate("window.isoproofDemo", wait="window.isoproofDemo.count >= 2")
    browser.screenshot(SCREENSHOT, width=820, height=560)
    return {"prediction": state["prediction"], "screenshot": str(SCREENSHOT.relative_to(ROOT))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks runtimes")
    parser.add_argument("--model", type=Path, help="checkpoint (default: the demo's model)")
    parser.add_argument("--runs", type=int, default=200, help="timed calls per batch size")
    parser.add_argument("--label", default="The demo's model", help="how the docs name the model")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # one thread everywhere, as the runtimes
    from isoproof.data import load_digits

    data = load_digits(seed=0)
    x, y = data.x_test.numpy(), data.y_test.numpy()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        checkpoint, model = _model(args.model, work)
        fp32 = export_onnx(model, work / "model.onnx")
        int8 = Path(quantize_int8(fp32, work / "model.int8.onnx", labelled=(x, y)).path)
        rows: list[dict[str, Any]] = []
        for kind, path in (("fp32", fp32), ("int8", int8)):
            report = verify_onnx(
                path,
                model,
                inputs=x,
                labels=y,
                evaluators=BACKENDS,
                latency_runs=args.runs,
                raise_on_failure=False,
            )
            print(report.table(), flush=True)
            rows += _rows(report, kind)
        demo = _screenshot(checkpoint, work)
        browser = shared_session()
        versions = {"chromium": browser.chromium, "onnxruntime-web": browser.ort_version}
    import openvino

    versions["openvino"] = openvino.__version__
    table = _table(rows, args.label, model.widths, versions)
    record(
        "runtimes",
        table,
        {"label": args.label, "model": model.widths, "rows": rows, "versions": versions, **demo},
    )
    for doc in (ROOT / "docs" / "export.md", ROOT / "README.md"):
        replace_section(doc, "runtimes", table)
    print(table)
    return 0 if all(r["ok"] for r in rows) else 1


def _table(
    rows: list[dict[str, Any]], label: str, widths: list[int], versions: dict[str, str]
) -> str:
    body = [
        [
            r["file"],
            r["runtime"],
            f"{r['max_abs_float64']:.1e}",
            f"{r['max_abs_torch']:.1e}",
            "" if r["accuracy"] is None else f"{100 * r['accuracy']:.2f}%",
            f"{r['ms_batch1']:.3f}",
            f"{r['ms_batch64']:.3f}",
        ]
        for r in rows
    ]
    headers = ["file", "runtime", "max abs vs float64", "max abs vs torch fp32", "accuracy",
               "ms batch 1", "ms batch 64"]  # fmt: skip
    v = ", ".join(f"{k} {val}" for k, val in versions.items())
    return (
        f"{label} {json.dumps(widths)} on the digits test split and the adversarial "
        f"sets, one thread each ({v}; `python -m benchmarks runtimes`):\n\n"
        + markdown_table(headers, body)
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
