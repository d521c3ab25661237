"""Shared fixtures: random isotropic models with every parameter non-trivial."""

from __future__ import annotations

import os
from collections.abc import Sequence

import pytest
import torch

import isoproof as ip
from isoproof.testing import default_atol

os.environ.setdefault("MPLBACKEND", "Agg")
torch.set_num_threads(min(2, torch.get_num_threads()))


def make_model(
    widths: Sequence[int],
    *,
    dtype: torch.dtype = torch.float64,
    seed: int = 0,
    psi: str = "decay",
    intrinsic_length: str = "trainable",
    radial: str = "tanh",
    scale: float = 0.5,
) -> ip.IsotropicMLP:
    """An IsotropicMLP with non-zero biases, psi vectors and intrinsic lengths."""
    g = torch.Generator().manual_seed(seed)
    model = ip.IsotropicMLP(
        widths,
        dtype=dtype,
        psi=psi,
        intrinsic_length=intrinsic_length,
        radial=radial,
        generator=g,
    )
    with torch.no_grad():
        for lin in model.linears:
            lin.bias.copy_(scale * torch.randn(lin.bias.shape, generator=g, dtype=dtype))
        if psi != "none":
            for p in model.psi:
                p.copy_(scale * torch.randn(p.shape, generator=g, dtype=dtype))
        if intrinsic_length != "none":
            for act in model.activations:
                act.set_o(0.05 + float(torch.rand((), generator=g)))
    return model


def batch(n_in: int, rows: int = 32, *, dtype: torch.dtype = torch.float64, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(rows, n_in, generator=g, dtype=dtype)


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A deep copy of the state, to check that failed operations change nothing."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_unchanged(model: torch.nn.Module, before: dict[str, torch.Tensor]) -> None:
    after = model.state_dict()
    assert set(after) == set(before), f"state keys changed: {set(after) ^ set(before)}"
    for k, v in before.items():
        assert after[k].shape == v.shape, f"{k} changed shape"
        torch.testing.assert_close(after[k], v, rtol=0, atol=0, equal_nan=True, msg=f"{k} changed")


TOL = {dt: default_atol(dt) for dt in (torch.float64, torch.float32)}  # the one table


@pytest.fixture(scope="module")
def isolated_cache(tmp_path_factory: pytest.TempPathFactory):
    """A data cache folder per test session and one torch thread (tiny matrices, shared cores)."""
    from isoproof.app.experiments.common import single_thread

    with pytest.MonkeyPatch.context() as mp, single_thread():
        mp.setenv("ISOPROOF_CACHE", str(tmp_path_factory.getbasetemp() / "isoproof-cache"))
        yield


@pytest.fixture(params=[torch.float64, torch.float32], ids=["f64", "f32"])
def dtype(request: pytest.FixtureRequest) -> torch.dtype:
    return request.param


_RUNTIME_PROBLEMS: dict[str, str | None] = {}


def _runtime_problem(marker: str) -> str | None:
    """Why the runtime of a ``browser`` / ``openvino`` test cannot run here (None if it can)."""
    if marker not in _RUNTIME_PROBLEMS:
        if marker == "browser":
            from isoproof.exporters.browser import browser_problem

            _RUNTIME_PROBLEMS[marker] = browser_problem()
        else:
            import importlib.util

            missing = importlib.util.find_spec("openvino") is None
            _RUNTIME_PROBLEMS[marker] = (
                "expected the openvino package, got none: pip install 'isoproof[edge]'"
                if missing
                else None
            )
    return _RUNTIME_PROBLEMS[marker]


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Tests marked ``browser`` / ``openvino`` skip with the reason where the runtime is missing,
    and fail instead under CI=true (CI installs both: ``make web`` and the ``edge`` extra)."""
    for marker in ("browser", "openvino"):
        if item.get_closest_marker(marker) is None:
            continue
        problem = _runtime_problem(marker)
        if problem and os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but the {marker} runtime cannot run: {problem}")
        if problem:
            pytest.skip(f"{marker} runtime: {problem}")


@pytest.fixture(scope="session")
def browser():
    """One headless Chromium with onnxruntime-web for the whole test session: the back-end's
    shared session, which ``verify_onnx(evaluators=["browser"])`` uses too."""
    from isoproof.exporters import browser as web

    session = web.shared_session()
    yield session
    session.close()
    web._SHARED.clear()


def forge_checkpoint(src, dst, edit) -> None:
    """Copy the training checkpoint ``src`` to ``dst`` with ``edit(tensors, training)`` applied
    and the SHA-256 recomputed: a forger's file, which only the content checks can refuse.
    ``edit`` may return the training entry's JSON text (for JSON ``json.dumps`` cannot write)."""
    import json

    from safetensors import safe_open
    from safetensors.torch import save_file

    from isoproof.io import _digest, _prefix

    with safe_open(str(src), framework="pt") as f:
        meta = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    training = json.loads(meta["training"])
    text = edit(tensors, training)
    meta["training"] = text if isinstance(text, str) else json.dumps(training)
    prefix = _prefix(meta["format"], meta["config"], meta["training"])
    meta["sha256"] = _digest(tensors, prefix)
    save_file(tensors, str(dst), metadata=meta)
