"""The experiment machinery (--quick): files written, every row present, invariants respected."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from isoproof.app.experiments import EXPERIMENTS, experiment_module, run_experiment
from isoproof.app.experiments import invariance as inv
from isoproof.app.experiments.common import Result, write_result
from isoproof.app.experiments.plotting import figure, ridge, save_figure
from isoproof.exceptions import IsoproofError


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory):
    """Run every experiment once in quick mode; ``{name: (json dict, written paths)}``."""
    out = tmp_path_factory.mktemp("results")
    cache = tmp_path_factory.getbasetemp() / "isoproof-cache"
    done = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ISOPROOF_CACHE", str(cache))
        for name in EXPERIMENTS:
            paths = run_experiment(name, quick=True, out=out, verbose=False)
            done[name] = (json.loads((out / f"{name}.json").read_text()), paths)
    return done


@pytest.mark.parametrize("name", list(EXPERIMENTS))
def test_each_experiment_writes_markdown_json_and_png(results, name):
    data, paths = results[name]
    assert sorted(p.name for p in paths) == sorted(f"{name}.{s}" for s in ("md", "json", "png"))
    png = next(p for p in paths if p.suffix == ".png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    md = next(p for p in paths if p.suffix == ".md").read_text()
    assert md.startswith("# ") and f"![{name}]({name}.png)" in md and "| --- |" not in md
    assert "|---|" in md and data["quick"] is True and data["seconds"] > 0
    assert data["environment"]["torch_threads"] == 1


def test_invariance_rows_and_float_error_of_growth(results):
    data, _ = results["invariance"]
    rows = data["rows"]
    assert len(rows) == 2 * len(inv.MODES) * len(inv.OPS)
    seen = {(r["data"], r["mode"], r["op"]) for r in rows}
    assert len(seen) == len(rows)
    for r in rows:
        if r["op"].startswith("+"):
            assert r["scaled_error"] < 1e-3, r  # growth: float32 rounding only (%)
            assert r["kl"] < 1e-9 and r["bound"] == 0.0 and r["removed_sigma_mass"] == 0.0
            assert r["width"] == 100 + int(r["op"])
        elif r["op"] == "0":
            assert r["scaled_error"] == 0.0 and r["kl"] == 0.0 and r["delta_acc"] == 0.0
        else:
            assert r["width"] == 100 + int(r["op"]) and r["removed_sigma_mass"] > 0
    # pruning more never removes less singular-value mass
    for name in ("digits", "mnist1d"):
        for mode in inv.MODES:
            mass = [
                r["removed_sigma_mass"]
                for r in rows
                if r["data"] == name and r["mode"] == mode and r["op"].startswith("-")
            ]
            assert mass == sorted(mass)


def test_output_change_metrics_against_hand_values():
    import torch

    z = torch.tensor([[3.0, 4.0], [0.0, 1.0]])
    m = inv.output_change_metrics(z, z + torch.tensor([[0.0, 0.5], [0.1, 0.0]]))
    assert m["scaled_error"] == pytest.approx(100 * (0.5 / 5 + 0.1 / 1) / 2)
    p, q = z.double().softmax(-1), (z + torch.tensor([[0.0, 0.5], [0.1, 0.0]])).double().softmax(-1)
    assert m["kl"] == pytest.approx(float((p * (p / q).log()).sum(-1).mean()))
    assert inv.output_change_metrics(z, z) == {"scaled_error": 0.0, "kl": 0.0}


def test_sparsification_saves_parameters_and_keeps_accuracy(results):
    data, _ = results["sparsification"]
    rows = data["rows"]
    assert [(r["data"], r["hidden_layers"]) for r in rows] == [
        (d, k) for d in ("digits", "mnist1d") for k in (2, 3, 4, 5, 6)
    ]
    for r in rows:
        assert r["hidden_weights_after"] == r["hidden_weights_formula"][1]
        assert r["hidden_weights_before"] == r["hidden_weights_formula"][0]
        assert r["params_after"] < r["params_before"]
        assert r["diagonal_maps"] == list(range(1, r["hidden_layers"], 2))
        assert r["max_abs_change"] < 1e-4
        assert abs(r["accuracy_after"] - r["accuracy_before"]) < 1.0


def test_neuroabundance_reaches_every_target(results):
    data, _ = results["neuroabundance"]
    rows = data["rows"]
    assert len(rows) == 16
    for r in rows:
        assert r["final_widths"][1:3] == [r["target"], r["target"]]
        assert r["hidden_width_per_epoch"][0] == r["start"]
        assert len(r["test_accuracy_per_epoch"]) == data["settings"]["epochs"] + 1


def test_tasks_phases_and_static_control(results):
    data, _ = results["tasks"]
    rows = data["rows"]
    per = data["settings"]["phase_epochs"]
    assert len(rows) == 3 * per + 1
    assert [r["weights"] for r in rows[1:]] == [[1.0, 0.0]] * per + [[1.0, 1.0]] * per + [
        [0.0, 1.0]
    ] * per
    static = data["histories"]["static"]["widths"]
    assert all(w == static[0] for w in static)
    adaptive = data["histories"]["adaptive"]["widths"]
    assert adaptive[0] == static[0] and adaptive[-1] != static[0]  # the buffer resized it


def test_spectra_start_orthogonal_for_both_networks(results):
    data, _ = results["spectra"]
    rows = data["rows"]
    assert {r["model"] for r in rows} == {"isotropic tanh", "standard tanh"}
    for r in rows:
        if r["epoch"] == 0:
            assert r["sigma_max"] == pytest.approx(1.0, abs=1e-5)
            assert r["sigma_min"] == pytest.approx(1.0, abs=1e-5)
    iso = data["singular_values"]["isotropic tanh"]
    assert len(iso) == data["settings"]["epochs"] + 1


def test_standard_vs_isotropic_pairs_every_seed(results):
    data, _ = results["standard-vs-isotropic"]
    rows = data["rows"]
    assert len(rows) == 2 * len(data["seeds"]) * 3
    for name in ("digits", "mnist1d"):
        for kind in ("isotropic", "standard", "linear"):
            curves = data["curves"][name][kind]
            assert len(curves) == len(data["seeds"])
            assert all(0 <= a <= 100 for c in curves for a in c)
    assert {(s["data"], s["model"]) for s in data["summary"]} == {
        (d, k) for d in ("digits", "mnist1d") for k in ("isotropic", "standard", "linear")
    }


def test_cnn_vs_mlp_pairs_every_seed_on_three_data_sets(results):
    data, _ = results["cnn-vs-mlp"]
    kinds = ("isotropic CNN", "tanh CNN", "isotropic MLP")
    sets = ("digits", "mnist", "mnist1d")
    assert len(data["rows"]) == 3 * len(data["seeds"]) * 3
    assert {(s["data"], s["model"]) for s in data["summary"]} == {
        (d, k) for d in sets for k in kinds
    }
    by = {(r["data"], r["seed"], r["model"]): r for r in data["rows"]}
    for d in sets:
        for s in data["seeds"]:
            # the isotropic CNN adds psi kernels and intrinsic lengths to the shared kernels
            assert by[d, s, "isotropic CNN"]["parameters"] > by[d, s, "tanh CNN"]["parameters"] > 0
        mean = np.mean([r["test_accuracy"] for r in data["rows"] if r["data"] == d])
        assert 0 <= mean <= 100
    # the prose is computed from the summary, not typed in
    md = (results["cnn-vs-mlp"][1][0].parent / "cnn-vs-mlp.md").read_text()
    first = data["summary"][0]
    assert f"isotropic CNN {first['mean']:.1f}%" in md


def test_cnn_channels_buffer_and_exact_sparsification(results):
    data, _ = results["cnn-channels"]
    cfg = data["settings"]
    for row in data["buffer"]:
        assert row["widths"][0][1:3] == [cfg["buffer_arch"][0]["conv"]] * 2
        assert len(row["widths"]) == cfg["buffer_epochs"] + 1
        assert row["widths"][-1] == row["final_widths"]
    for row in data["sparsification"]:
        assert row["diagonal_layers"] == [1, 3]  # the two 1x1 convolutions, never a 3x3
        assert row["parameters_after"] < row["parameters_before"]
        assert row["max_logit_change"] <= 1e-5  # exact up to float32 rounding
        assert row["accuracy_after"] == row["accuracy_before"]


def test_unknown_experiment_is_refused():
    with pytest.raises(IsoproofError, match="expected an experiment in"):
        experiment_module("bogus")


def test_write_result_and_ridge(tmp_path):
    fig, (ax,) = figure(1, 1)
    ridge(ax, [np.linspace(0, 1, 20), np.ones(5)], ["a", "b"])
    png = save_figure(fig, tmp_path / "r.png")
    result = Result("demo", "Demo", "| a |\n|---|\n| 1 |", {"seconds": 1.5, "b": [math.inf]}, [png])
    paths = write_result(result, tmp_path)
    md = (tmp_path / "demo.md").read_text()
    assert "# Demo" in md and "![r](r.png)" in md and "Wall time 2 s" in md
    text = (tmp_path / "demo.json").read_text()
    assert "Infinity" not in text and json.loads(text)["b"] == ["inf"]  # strict JSON
    assert [p.name for p in paths] == ["demo.md", "demo.json", "r.png"]


def test_readme_cnn_numbers_come_from_the_results_files():
    """The README's CNN limitation quotes docs/results/cnn-vs-mlp.json and cnn-channels.json."""
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    readme = (root / "README.md").read_text()
    d = json.loads((root / "docs/results/cnn-vs-mlp.json").read_text())
    by = {(r["data"], r["model"]): r["mean"] for r in d["summary"]}
    for name, label in (("digits", "digits"), ("mnist", "MNIST-5k"), ("mnist1d", "MNIST-1D")):
        iso, tanh, mlp = (by[name, k] for k in ("isotropic CNN", "tanh CNN", "isotropic MLP"))
        assert f"{label} {iso:.1f}% vs {tanh:.1f}% vs {mlp:.1f}%" in readme
    c = json.loads((root / "docs/results/cnn-channels.json").read_text())
    rows = c["sparsification"]
    saved = sum(1 - r["parameters_after"] / r["parameters_before"] for r in rows) / len(rows)
    assert f"{100 * saved:.1f}% fewer numbers" in readme
