"""The deployment comparison of issue 18: three [784, 512 x 3, 10] files, prose from the numbers."""

from __future__ import annotations

import pytest
import torch

from benchmarks import bench_deploy as bd


@pytest.fixture(scope="module")
def files():
    return bd.models()


def test_every_file_has_the_pruned_widths_and_isoproof_keeps_its_function(files):
    import isoproof as ip
    from isoproof.standard import widths_of

    for name, model in files.items():
        assert widths_of(model) == [784, 512, 512, 512, 10], name
    pruned, sparse = files["isoproof pruned"], files["isoproof pruned + sparsified"]
    x = torch.randn(8, 784)
    torch.testing.assert_close(sparse(x), pruned(x), atol=1e-5, rtol=1e-5)  # sparsify is exact
    assert ip.count_parameters(sparse) < 0.75 * ip.count_parameters(pruned)


def test_render_computes_every_ratio_from_the_result():
    def row(b1, b64, stored):
        return {"batch1": b1, "batch64": b64, "stored": stored, "widths": [784, 512, 10],
                "bytes": 2**20, "max_abs_error": 1e-7, "verified": True}  # fmt: skip

    text = bd.render({"isoproof pruned": row(3.0, 5.0, 100), "Torch-Pruning": row(2.0, 4.0, 50)})
    assert "isoproof pruned: 1.50x (batch 1) and 1.25x (batch 64)" in text
    assert "2.00x its stored numbers" in text
    assert "| Torch-Pruning | [784, 512, 10] | 50 | 1.00 | 1.0e-07 | 2000.000 (1.00) |" in text
