"""`--algo evo`: budget-preserving mutations, the knapsack start, resume, the confirmation split; the knapsack's
alias; the evaluation windows' own seed."""

import json

import numpy as np
import pytest

from calibration.data import evaluation_windows
from calibration.layers import Layer
from halo import allocation as alloc_mod
from ramp.config.options import search_config
from ramp.config.search import SearchConfig
from ramp.engine import confirm, evo
from ramp.engine.context import prepare
from ramp.engine.knapsack import allocate
from ramp.engine.loop import run_episodes
from ramp.engine.run import run
from ramp.mdp.budget import Budget
from ramputils.errors import UserError
from tests.conftest import fast_config


def _layers():
    widths = [(256, 512), (576, 256), (256, 768), (576, 576), (256, 256), (1536, 576)]
    return [Layer(index=i, name=f"l{i}", gguf_name=f"blk.{i}.ffn_down.weight", block=i, role="down",
                  in_features=n_in, out_features=n_out) for i, (n_in, n_out) in enumerate(widths)]


def test_a_level_switch_stays_within_the_budget_and_is_seeded():
    layers, actions, budget = _layers(), (3, 4, 5, 6), Budget(target=5.0, ceiling=5.25)
    rng = np.random.default_rng(0)
    table = {layer.gguf_name: {str(b): float(s * 4.0 ** -(b - 3)) for b in actions}
             for layer, s in zip(layers, rng.uniform(0.1, 2.0, len(layers)))}
    start = allocate(layers, list(actions), table, budget)
    mutator = evo.Mutator(layers, actions, budget, raises=2)
    parent = mutator.index(start)
    assert mutator.bits(parent) == [min(b for b in actions if mutator.index([b] * 6)[i] == parent[i])
                                    for i, _ in enumerate(layers)]
    children = [mutator.child(parent, np.random.default_rng([0, i])) for i in range(50)]
    assert all(child is not None for child in children)
    for index, _ in children:
        assert index != parent
        assert alloc_mod.resolve(layers, mutator.bits(index)).bpw <= budget.target + 1e-9
    assert len({tuple(index) for index, _ in children}) > 5   # the mutations explore
    again = [mutator.child(parent, np.random.default_rng([0, i])) for i in range(50)]
    assert again == children


def test_fallback_twins_are_one_level():
    layer = _layers()[1]   # 576 wide: Q6_K falls back to Q8_0, so widths 6 and 8 are one type
    ordered, level_of = evo.levels(layer, (3, 4, 5, 6, 8), False)
    assert len(ordered) == 4 and level_of[6] == level_of[8] == 3
    assert [cost for _, cost in ordered] == sorted(cost for _, cost in ordered)


def test_evo_search_starts_from_the_knapsack_and_confirms(tiny_llama_dir, tiny_cal, tmp_path):
    run(fast_config(tiny_llama_dir, tiny_cal, algo="knapsack", budget=4.6), tmp_path / "k")
    knapsack = json.loads((tmp_path / "k" / "allocation.json").read_text())["layers"]
    run(fast_config(tiny_llama_dir, tiny_cal, algo="evo", budget=4.6, episodes=7, evo_offspring=3,
                    confirm_samples=2, confirm_margin=0), tmp_path / "e")
    out = tmp_path / "e"
    summary = json.loads((out / "summary.json").read_text())
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert summary["method"] == "evo" and summary["chosen"] == "confirmed"
    assert log[0]["bits"] == [layer["bits"] for layer in knapsack]
    assert all(record["feasible"] for record in log) and len(log) == 7
    parents = [record["parent_loss"] for record in log]
    assert parents == sorted(parents, reverse=True)   # elitist: the parent's loss never rises
    assert parents[0] == pytest.approx(log[0]["kld"])   # the loss is the KL divergence
    rows = summary["confirmation"]
    assert 1 <= len(rows) <= 4 and sum(row["knapsack"] for row in rows) == 1
    chosen = json.loads((out / "allocation.json").read_text())
    assert chosen["label"] == "confirmed" and chosen["method"] == "evo"
    assert min(row["confirm_kld"] for row in rows) == pytest.approx(
        next(row["confirm_kld"] for row in rows if row["search_kld"] == summary["allocations"]["confirmed"]["kld"]))
    # with a margin no gain reaches, the same search hands out the knapsack's allocation
    run(fast_config(tiny_llama_dir, tiny_cal, algo="evo", budget=4.6, episodes=7, evo_offspring=3,
                    confirm_samples=2, confirm_margin=1e9), tmp_path / "m")
    kept = json.loads((tmp_path / "m" / "summary.json").read_text())
    assert [row["eligible"] for row in kept["confirmation"]] == [row["knapsack"] for row in kept["confirmation"]]
    assert [layer["bits"] for layer in json.loads((tmp_path / "m" / "allocation.json").read_text())["layers"]] == [
        layer["bits"] for layer in knapsack]


def test_a_candidate_must_beat_the_knapsack_beyond_the_confirmation_noise():
    assert confirm.gain_in_se((1.0, 2.0, 3.0), (0.9, 1.8, 2.9)) == pytest.approx(4.0)  # gains .1 .2 .1: se 1/30
    assert confirm.gain_in_se((1.0, 2.0, 3.0), (1.1, 2.2, 3.1)) == pytest.approx(-4.0)
    assert confirm.gain_in_se((1.0, 2.0), (1.0, 2.0)) == 0.0
    assert confirm.gain_in_se((1.0, 2.0), (0.5, 1.5)) == float("inf")   # the same gain on every window
    assert search_config(algo="evo").windows.confirm_margin == 2.0
    with pytest.raises(UserError, match="--confirm-margin must be 0 or more"):
        search_config(algo="evo", confirm_margin=-1)
    with pytest.raises(UserError, match="--confirm-margin is the confirmation split"):
        search_config(algo="knapsack", confirm_margin=1)
    old = SearchConfig().to_json()
    del old["windows"]["confirm_margin"]   # a search saved before the margin resumes choosing as it did
    assert SearchConfig.from_json(old).windows.confirm_margin == 0.0


def test_a_resumed_evolution_repeats_the_uninterrupted_one(tiny_llama_dir, tiny_cal, tmp_path):
    config = fast_config(tiny_llama_dir, tiny_cal, algo="evo", budget=4.6, episodes=8, evo_offspring=3)
    (tmp_path / "a").mkdir()
    ctx = prepare(config, tmp_path / "a")
    straight = evo.EvoLearner(ctx)
    run_episodes(tmp_path / "a", 8, straight, resume=False)
    (tmp_path / "b").mkdir()
    run_episodes(tmp_path / "b", 5, evo.EvoLearner(ctx), resume=False)
    resumed = evo.EvoLearner(ctx)
    run_episodes(tmp_path / "b", 8, resumed, resume=True)
    def bits(folder):
        return [json.loads(line)["bits"] for line in (folder / "log.jsonl").read_text().splitlines()]

    assert bits(tmp_path / "a") == bits(tmp_path / "b")
    assert resumed.finalists == straight.finalists and resumed.parent == straight.parent


def test_greedy_is_the_knapsack_and_evo_options_are_refused_elsewhere():
    assert search_config(algo="greedy").algo == "knapsack"
    old = SearchConfig().to_json() | {"algo": "greedy"}
    assert SearchConfig.from_json(old).algo == "knapsack"
    assert search_config(algo="evo").quality == "kld" and search_config(algo="evo", quality="ppl").quality == "ppl"
    with pytest.raises(UserError, match="--evo-offspring is an evolution setting"):
        search_config(algo="sac", evo_offspring=2)
    with pytest.raises(UserError, match="--confirm-samples is the confirmation split"):
        search_config(algo="knapsack", confirm_samples=2)
    assert search_config(algo="evo", sensitivity="measured").sensitivity == "measured"


def test_the_confirmation_split_is_disjoint_from_the_search_windows():
    tokens = np.arange(20_000)
    import torch

    tokens = torch.as_tensor(tokens)
    search = evaluation_windows(tokens, 4, 64, seed=0)
    confirm = evaluation_windows(tokens, 8, 64, seed=0, skip=4)
    assert torch.equal(evaluation_windows(tokens, 12, 64, seed=0)[:4], search)
    assert not set(search[:, 0].tolist()) & set(confirm[:, 0].tolist())
    with pytest.raises(UserError, match="fewer than the"):
        evaluation_windows(tokens, 10, 1000, seed=0, skip=10)


def test_the_search_windows_do_not_follow_the_agent_seed(tiny_llama_dir, tiny_cal, tmp_path):
    base = {}
    for name, options in {"seed0": {}, "seed1": {"seed": 1}, "eval1": {"eval_seed": 1}}.items():
        run(fast_config(tiny_llama_dir, tiny_cal, algo="uniform", **options), tmp_path / name)
        base[name] = json.loads((tmp_path / name / "summary.json").read_text())["base"]["ppl"]
    assert base["seed0"] == base["seed1"] != base["eval1"]
