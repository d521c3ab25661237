"""The README's benchmark table is computed from the stored results, never typed in."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import summary

ROOT = Path(__file__).resolve().parents[1]


def test_readme_table_is_the_render_of_the_stored_results():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    begin, end = "<!-- bench:summary -->\n", "\n<!-- /bench:summary -->"
    assert readme.split(begin, 1)[1].split(end, 1)[0] == summary.render()


def test_every_row_reads_its_numbers_from_the_result(tmp_path):
    """Change one stored number: the row changes with it (the prose is computed)."""
    for name in ("deploy", "resize_cost"):
        (tmp_path / f"{name}.json").write_text((summary.RESULTS / f"{name}.json").read_text())
    data = json.loads((tmp_path / "resize_cost.json").read_text())
    data["torch_pruning"]["ratio"] = 12.25
    (tmp_path / "resize_cost.json").write_text(json.dumps(data))
    text = summary.render(tmp_path)
    assert "50% prune 12.2x Torch-Pruning" in text
    assert text.count("\n") == 3  # header, rule, two rows: absent results are skipped


def test_readme_cnn_limitation_is_the_render_of_the_stored_result():
    from benchmarks.bench_compression_cnn import readme_line

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    begin, end = "<!-- bench:compression_cnn -->\n", "\n<!-- /bench:compression_cnn -->"
    stored = json.loads((summary.RESULTS / "compression_cnn.json").read_text(encoding="utf-8"))
    assert readme.split(begin, 1)[1].split(end, 1)[0] == readme_line(stored)
