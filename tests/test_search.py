"""`ramp search` end to end on a tiny model: outputs, determinism, kill -9 and resume, greedy, transfer."""

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from calibration.layers import Layer
from ramp.cli import main as ramp_main
from ramp.engine.knapsack import allocate, solve_knapsack
from ramp.engine.run import run
from ramp.mdp.budget import Budget, make_budget
from ramputils.errors import UserError, run_cli
from tests.conftest import fast_config


def _log(out):
    return [json.loads(line) for line in (Path(out) / "log.jsonl").read_text().splitlines()]


def test_sac_search_end_to_end_and_deterministic(tiny_llama_dir, tiny_cal, tmp_path, capsys):
    argv = ["search", "--model", str(tiny_llama_dir), "--calibration", str(tiny_cal.path), "--episodes", "6",
            "--warmup-episodes", "2", "--updates-per-episode", "4", "--eval-samples", "2", "--eval-seq-len", "64",
            "--sac-mode", "paper", "--out", str(tmp_path / "a"), "--export", str(tmp_path / "a.gguf")]
    assert run_cli(ramp_main, argv) == 0
    out = tmp_path / "a"
    for name in ("allocation.json", "policy.safetensors", "policy.json", "log.jsonl", "learning.png",
                 "size-ppl.png", "summary.json", "checkpoint.pt"):
        assert (out / name).is_file(), name
    records = _log(out)
    assert [r["episode"] for r in records] == list(range(6))
    assert all(r["warmup"] for r in records[:2]) and not any(r["warmup"] for r in records[2:])
    for key in ("reward", "ppl", "kld", "bpw", "alpha", "seconds", "eval_seconds", "update_seconds"):
        assert all(np.isfinite(r[key]) for r in records), key
    assert "critic_loss" in records[-1] and "actor_loss" in records[-1]
    summary = json.loads((out / "summary.json").read_text())
    chosen = summary["allocations"][summary["chosen"]]
    assert chosen["feasible"] and chosen["bpw"] <= 4.5 + 1e-9
    assert {"deterministic"} <= set(summary["allocations"])
    alloc = json.loads((out / "allocation.json").read_text())
    assert len(alloc["layers"]) == 14 and alloc["summary"]["bpw"] == pytest.approx(chosen["real_bpw"], abs=1e-4)
    assert (tmp_path / "a.gguf").stat().st_size > 0  # export ran it in llama.cpp before returning
    # same seed, same everything
    run(fast_config(tiny_llama_dir, tiny_cal, sac_mode="paper"), tmp_path / "b")
    again = _log(tmp_path / "b")
    assert [(r["ppl"], r["bits"], r["reward"]) for r in again] == [(r["ppl"], r["bits"], r["reward"]) for r in records]


def test_kill_and_resume_reaches_the_same_result(tiny_llama_dir, tiny_cal, tmp_path):
    config = fast_config(tiny_llama_dir, tiny_cal, episodes=8)
    run(config, tmp_path / "straight")
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "ramp", "search", "--model", str(tiny_llama_dir), "--calibration",
           str(tiny_cal.path), "--episodes", "8", "--warmup-episodes", "2", "--updates-per-episode", "4",
           "--eval-samples", "2", "--eval-seq-len", "64", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if (out / "log.jsonl").exists() and len((out / "log.jsonl").read_text().splitlines()) >= 4:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the search ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert len(_log(out)) < 8
    with pytest.raises(UserError, match="--resume"):
        run(config, out)
    run(config, out, resume=True)
    straight, resumed = _log(tmp_path / "straight"), _log(out)
    def key(rows):
        return [(r["ppl"], r["bits"], r["reward"]) for r in rows]

    assert key(resumed) == key(straight)
    assert (json.loads((out / "allocation.json").read_text())["layers"]
            == json.loads((tmp_path / "straight" / "allocation.json").read_text())["layers"])


def _layers(params):
    return [Layer(index=i, name=f"l{i}", gguf_name=f"blk.{i}.ffn_down.weight", block=i, role="down",
                  in_features=256, out_features=p) for i, p in enumerate(params)]


def test_greedy_knapsack_finds_the_known_optimum():
    rng = np.random.default_rng(0)
    layers = _layers([256, 512, 256, 768, 512, 256])
    actions = [3, 4, 5, 6]
    sens = {layer.gguf_name: {str(b): float(s * 4.0 ** -(b - 3)) for b in actions}
            for layer, s in zip(layers, rng.uniform(0.1, 2.0, len(layers)))}
    budget = Budget(target=4.6, ceiling=4.85)
    got = allocate(layers, actions, sens, budget)
    from halo import allocation as alloc_mod

    best = None
    for combo in itertools.product(actions, repeat=len(layers)):
        if alloc_mod.resolve(layers, combo).bpw <= budget.target + 1e-9:
            cost = sum(sens[layer.gguf_name][str(b)] for layer, b in zip(layers, combo))
            best = min(best or (cost, combo), (cost, combo))
    got_cost = sum(sens[layer.gguf_name][str(b)] for layer, b in zip(layers, got))
    assert alloc_mod.resolve(layers, got).bpw <= budget.target + 1e-9
    assert got_cost == pytest.approx(best[0])


def test_knapsack_respects_capacity_exactly():
    costs = np.array([[3.0, 1.0], [3.0, 1.0]])
    weights = np.array([[1.0, 2.0], [1.0, 2.0]])
    assert solve_knapsack(costs, weights, 3.0) in ([0, 1], [1, 0])
    assert solve_knapsack(costs, weights, 4.0) == [1, 1]
    with pytest.raises(UserError):
        solve_knapsack(costs, weights, 1.0)


def test_budget_below_reachable_is_refused():
    layers = _layers([256, 256])
    with pytest.raises(UserError, match=r"smallest reachable allocation 3\.4375"):
        make_budget(layers, (3, 4, 5, 6), target=3.0)


def test_greedy_cli_and_transfer_mismatch(tiny_llama_dir, tiny_cal, tmp_path, capsys):
    run(fast_config(tiny_llama_dir, tiny_cal, algo="greedy"), tmp_path / "g")
    summary = json.loads((tmp_path / "g" / "summary.json").read_text())
    assert summary["method"] == "knapsack" and summary["allocations"]["best"]["feasible"]
    assert (tmp_path / "g" / "sensitivity.json").is_file()
    # a policy trained with other actions / features fails with one clear line
    run(fast_config(tiny_llama_dir, tiny_cal, episodes=3), tmp_path / "p")
    card = json.loads((tmp_path / "p" / "policy.json").read_text())
    card["features"] = card["features"][:10]
    (tmp_path / "p" / "policy.json").write_text(json.dumps(card))
    argv = ["transfer", "--policy", str(tmp_path / "p" / "policy.safetensors"), "--target", str(tiny_llama_dir),
            "--calibration", str(tiny_cal.path), "--out", str(tmp_path / "t")]
    assert run_cli(ramp_main, argv) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("error: policy policy.safetensors was trained")
    assert run_cli(ramp_main, ["transfer", "--policy", "no-such-policy", "--target", "default",
                               "--out", str(tmp_path / "t2")]) == 2
    assert "not found" in capsys.readouterr().err


@pytest.mark.parametrize("bits", [3, 6])
def test_target_size_counts_what_the_export_writes(tiny_llama_dir, tiny_cal, tmp_path, bits):
    """The bytes a --target-size leaves to the layers: other bytes + layer bytes bound the exported file from above
    (HALO's metadata keys at their largest, worst-case alignment padding), and not by much."""
    from calibration.models import load_model, resolve
    from halo import allocation as alloc_mod
    from halo.exporter import ExportOptions, export
    from halo.file_size import bytes_besides_layers

    source = resolve(str(tiny_llama_dir))
    other = bytes_besides_layers(load_model(source), source, [layer.gguf_name for layer in tiny_cal.layers])
    alloc = alloc_mod.resolve(tiny_cal.layers, [bits] * len(tiny_cal.layers))
    report = export(str(tiny_llama_dir), alloc, tmp_path / "u.gguf", tiny_cal.path, ExportOptions(verify=False))
    predicted = other + alloc.bytes
    assert report.file_bytes <= predicted <= report.file_bytes + 16384, (predicted, report.file_bytes)


def test_search_with_an_ablation_reward(tiny_llama_dir, tiny_cal, tmp_path):
    out = tmp_path / "linear"
    run(fast_config(tiny_llama_dir, tiny_cal, reward="linear", episodes=3, sac_mode="paper"), out)
    assert json.loads((out / "config.json").read_text())["reward"] == "linear"
    records = _log(out)
    assert len(records) == 3
    for r in records:  # linear budget term: -2 per bpw over the target, no cliff
        assert r["r_budget"] == pytest.approx(-2.0 * max(0.0, r["bpw"] - 4.5))
    with pytest.raises(UserError, match="unknown --reward 'accuracy'; use one of quality-first"):
        ramp_main(["search", "--reward", "accuracy", "--out", str(tmp_path / "x")])
    assert not (tmp_path / "x").exists()


def _lowest_feasible(summary: dict, key: str) -> str:
    """The label of the feasible answer lowest in `key`, the loop's 'best' on a tie."""
    rows = {k: v for k, v in summary["allocations"].items() if v["feasible"]}
    return min(sorted(rows, key=lambda k: k != "best"), key=lambda k: rows[k][key])


def test_the_answer_is_the_feasible_allocation_lowest_in_loss():
    """The final deterministic rollout is not an episode: when it fits and is lower in loss than the best
    episode, it is the answer; an infeasible one never is, and a tie keeps the best episode."""
    from types import SimpleNamespace

    from ramp.engine.outputs import lowest_feasible as pick

    outcomes = {(4, 4): (5.0, 4.0), (4, 5): (4.0, 4.5), (5, 5): (3.0, 5.0), (3, 5): (5.0, 4.0)}  # bits: (loss, bpw)
    ctx = SimpleNamespace(outcome=lambda bits: (None, outcomes[tuple(bits)]),
                          feasible=lambda o: o[1] <= 4.5, loss=lambda o: o[0])
    assert pick(ctx, {"chosen": "best", "allocations": {"deterministic": [4, 5], "best": [4, 4]}}) == "deterministic"
    assert pick(ctx, {"chosen": "best", "allocations": {"deterministic": [5, 5], "best": [4, 4]}}) == "best"
    assert pick(ctx, {"chosen": "best", "allocations": {"deterministic": [3, 5], "best": [4, 4]}}) == "best"
    assert pick(ctx, {"chosen": "deterministic", "allocations": {"deterministic": [5, 5]}}) == "deterministic"


def test_repair_budget_mode_keeps_every_episode_within_budget(tiny_llama_dir, tiny_cal, tmp_path):
    out = tmp_path / "repair"
    run(fast_config(tiny_llama_dir, tiny_cal, budget=3.8, budget_mode="repair", episodes=4, sac_mode="paper"), out)
    records = _log(out)
    assert all(r["feasible"] and r["bpw"] <= 3.8 + 1e-9 and r["r_budget"] == 0.0 for r in records)
    assert any(r["repaired_layers"] > 0 for r in records)   # random warm-up actions overshoot 3.8 bpw
    summary = json.loads((out / "summary.json").read_text())
    assert summary["allocations"]["deterministic"]["feasible"]
    assert summary["chosen"] == _lowest_feasible(summary, "ppl")
    with pytest.raises(UserError, match="unknown --budget-mode 'clip'; use one of reward, repair"):
        ramp_main(["search", "--budget-mode", "clip", "--out", str(tmp_path / "x")])


def test_kld_quality_chooses_the_lowest_divergence(tiny_llama_dir, tiny_cal, tmp_path):
    out = tmp_path / "kld"
    run(fast_config(tiny_llama_dir, tiny_cal, quality="kld", episodes=5, sac_mode="paper"), out)
    records = [r for r in _log(out) if r["feasible"]]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["chosen"] == _lowest_feasible(summary, "kld") and records
    assert summary["allocations"]["best"]["kld"] == min(r["kld"] for r in records)
    assert json.loads((out / "config.json").read_text())["quality"] == "kld"


def test_every_memory_plan_gives_identical_episodes(tiny_llama_dir, tiny_cal, tmp_path, caplog):
    """The evaluator's three memory plans, each forced, give the same search episode for episode."""
    import logging

    logs = {}
    for plan in ("dequantized", "bytes", "on-the-fly"):
        with caplog.at_level(logging.INFO, logger="ramp.evaluation.weight_cache"):
            run(fast_config(tiny_llama_dir, tiny_cal, episodes=4, plan=plan), tmp_path / plan)
        assert f"plan {plan}" in caplog.text
        caplog.clear()
        logs[plan] = [(r["bits"], r["ppl"], r["kld"], r["reward"]) for r in _log(tmp_path / plan)]
    assert logs["dequantized"] == logs["bytes"] == logs["on-the-fly"] and len(logs["bytes"]) == 4


def test_a_streamed_model_gives_identical_episodes(tiny_llama_dir, tiny_cal, tmp_path, capsys):
    """Forced to stream from disk (--max-memory far below the model), the search's episodes are unchanged."""
    whole = run(fast_config(tiny_llama_dir, tiny_cal, episodes=3, max_memory=10**9), tmp_path / "whole")
    streamed = run(fast_config(tiny_llama_dir, tiny_cal, episodes=3, max_memory=10**6), tmp_path / "streamed")
    err = capsys.readouterr().err
    assert "loading the model whole" in err and "streaming its blocks from disk" in err
    assert [(r["bits"], r["ppl"], r["kld"]) for r in _log(tmp_path / "streamed")] == [
        (r["bits"], r["ppl"], r["kld"]) for r in _log(tmp_path / "whole")]
    assert streamed["allocations"] == whole["allocations"]
    assert not any(p.name.startswith(".offload-") for p in (tmp_path / "streamed").iterdir())


def test_a_search_without_workers_never_imports_ray(tiny_llama_dir, tiny_cal, tmp_path):
    code = ("import sys; from ramp.config.options import search_config; from ramp.engine.run import run; "
            f"run(search_config(model={str(tiny_llama_dir)!r}, calibration={str(tiny_cal.path)!r}, episodes=2, "
            f"warmup_episodes=1, updates_per_episode=2, eval_samples=2, eval_seq_len=32), {str(tmp_path / 'o')!r}); "
            "print('ray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "False"
