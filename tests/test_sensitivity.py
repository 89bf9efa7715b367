"""Sensitivity tables (ramp.sensitivity): the Fisher and noise estimates against the measured table on a tiny
model, the Fisher quadratic form against the evaluator on one perturbation, the cache and its resumption."""

import json
import os

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from ramp import sensitivity
from ramp.cli import main as ramp_main
from ramp.engine.context import prepare
from ramp.sensitivity import cache, fisher
from ramputils.errors import run_cli
from tests.conftest import fast_config


@pytest.fixture(scope="module")
def ctx(tiny_llama_dir, tiny_cal, tmp_path_factory):
    config = fast_config(tiny_llama_dir, tiny_cal, algo="greedy", eval_samples=4)
    return prepare(config, tmp_path_factory.mktemp("sens-run"))


@pytest.fixture(scope="module")
def measured(ctx):
    return sensitivity.table(ctx, "measured")


def _pairs(record, layers, actions):
    return np.array([record.table[layer.gguf_name][str(b)] for layer in layers for b in actions])


@pytest.mark.parametrize("method", ["fisher", "noise"])
def test_estimates_rank_like_the_measured_table(ctx, measured, method):
    record = sensitivity.table(ctx, method)
    assert record.complete and measured.complete
    got, exact = _pairs(record, ctx.layers, ctx.config.actions), _pairs(measured, ctx.layers, ctx.config.actions)
    assert np.all(np.isfinite(got)) and np.all(got > 0)
    assert spearmanr(got, exact).statistic > 0.8
    for layer in ctx.layers:  # fewer bits never estimated cheaper than more
        row = [record.table[layer.gguf_name][str(b)] for b in sorted(ctx.config.actions)]
        assert row == sorted(row, reverse=True), (layer.gguf_name, row)
    assert record.evaluations == {"fisher": 0, "noise": len(ctx.layers)}[method]


def test_fisher_quadratic_form_predicts_a_small_perturbation(ctx):
    """0.5 * G^T dW^2 A against the evaluator's KL for a small random change of one layer: same scale."""
    windows = fisher.calibration_windows(ctx, 4)
    g, a = fisher.moments(ctx.evaluator.model, ctx.layers, windows, seed=0)
    for layer in (ctx.layers[2], ctx.layers[-1]):
        base = ctx.evaluator.cache.base[layer.index]
        dw = torch.randn(base.shape, generator=torch.Generator().manual_seed(1)) * 0.02 * base.std()
        predicted = 0.5 * float(g[layer.name] @ (dw.double() ** 2) @ a[layer.name])
        got = ctx.evaluator.evaluate([None] * len(ctx.layers), {layer.index: base + dw}).kld
        assert 0.25 < predicted / got < 4, (layer.gguf_name, predicted, got)


def test_tables_are_cached_beside_the_calibration_and_resumed(ctx, measured, tmp_path):
    path = cache.path_for(ctx, "measured")
    assert path.parent == ctx.calibration.path / "sensitivity" and path.is_file()
    assert cache.path_for(ctx, "fisher") != path
    again = sensitivity.table(ctx, "measured")   # reused: no new evaluations
    assert again.table == measured.table and again.evaluations == measured.evaluations
    # a measurement stopped halfway finishes where it stopped, with the same numbers
    data = json.loads(path.read_text())
    first = ctx.layers[0].gguf_name
    data["table"] = {first: data["table"][first]}
    data["complete"] = False
    path.write_text(json.dumps(data))
    try:
        resumed = sensitivity.table(ctx, "measured")
        assert resumed.table == measured.table and resumed.complete
        assert resumed.evaluations > measured.evaluations   # the missing layers were measured again
    finally:
        cache.save(path, measured)
    path.write_text("{not json")
    try:
        with pytest.raises(Exception, match="unreadable.*delete it"):
            sensitivity.table(ctx, "measured")
    finally:
        cache.save(path, measured)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_calibration_keeps_tables_in_the_run(ctx, tmp_path, monkeypatch):
    folder = tmp_path / "ro"
    folder.mkdir()
    monkeypatch.setattr(ctx.calibration, "path", folder)
    monkeypatch.setattr(ctx, "out", tmp_path / "run")
    folder.chmod(0o500)
    try:
        assert cache.folder(ctx) == tmp_path / "run" / "sensitivity"
    finally:
        folder.chmod(0o700)


def test_greedy_search_with_fisher_writes_its_table(tiny_llama_dir, tiny_cal, tmp_path, capsys):
    argv = ["search", "--model", str(tiny_llama_dir), "--calibration", str(tiny_cal.path), "--algo", "greedy",
            "--sensitivity", "fisher", "--fisher-samples", "2", "--eval-samples", "2", "--eval-seq-len", "64",
            "--budget", "4.5", "--out", str(tmp_path / "g")]
    assert run_cli(ramp_main, argv) == 0
    summary = json.loads((tmp_path / "g" / "summary.json").read_text())
    assert summary["sensitivity"]["method"] == "fisher" and summary["sensitivity"]["evaluations"] == 0
    assert summary["allocations"]["best"]["feasible"]
    table = json.loads((tmp_path / "g" / "sensitivity.json").read_text())
    assert table["method"] == "fisher" and table["settings"]["fisher_samples"] == 2
    assert "note: on" not in capsys.readouterr().err   # the Gemma warning is for architectures with post-norms


def test_fisher_on_a_post_norm_architecture_says_what_it_costs(ctx, capsys, monkeypatch):
    """On Gemma-style models fisher's files measured 1.28-1.51x the exact table's KLD: the search says so."""
    monkeypatch.setattr(type(ctx.source), "gguf_arch", property(lambda self: "gemma3"))
    sensitivity.table(ctx, "fisher")
    err = capsys.readouterr().err
    assert "note: on gemma3" in err and "--sensitivity measured" in err


@pytest.mark.parametrize("argv, message", [
    (["--algo", "ppo", "--sensitivity", "fisher"],
     "--sensitivity is a knapsack setting: use it with --algo knapsack, evo or sac (guided)"),
    (["--sac-mode", "paper", "--sensitivity", "fisher"], "--sensitivity is a knapsack setting"),
    (["--algo", "greedy", "--sensitivity", "measured", "--fisher-samples", "4"],
     "--fisher-samples is a Fisher setting"),
    (["--algo", "greedy", "--sensitivity", "hessian"], "--sensitivity"),
])
def test_sensitivity_options_are_checked(argv, message, tmp_path, capsys):
    assert run_cli(ramp_main, ["search", *argv, "--out", str(tmp_path / "x")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_every_sensitivity_choice_has_a_method():
    from ramp.config.search import SENSITIVITIES, SearchConfig

    assert set(SENSITIVITIES) == set(sensitivity._COMPUTE) and SearchConfig().sensitivity == "fisher"
