"""Every docstring example in isoproof runs and its printed result holds (they check invariants)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest
import torch

import isoproof as ip

MODULES = sorted(
    m.name
    for m in pkgutil.walk_packages(ip.__path__, "isoproof.")
    if ".cli" not in m.name and not m.name.endswith("__main__")
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name, tmp_path):
    module = importlib.import_module(name)
    globs = {"torch": torch, "ip": ip, "tmp_path": tmp_path}
    globs.update({k: getattr(ip, k) for k in ip.__all__})
    torch.manual_seed(0)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in finder.find(module, name, globs=dict(vars(module), **globs)):
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"
