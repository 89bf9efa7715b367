"""The benchmark scripts run end to end (--quick) on a tiny model: real CLI steps, real llama.cpp numbers."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _script(name: str, *args) -> None:
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / name), *map(str, args)], check=True, cwd=ROOT)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from conftest import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("bench") / "tiny")


def test_search_pipeline_quick(tiny, tmp_path):
    _script("search_pipeline.py", "--quick", "--model", tiny, "--work", tmp_path / "work", "--out", tmp_path,
            "--dtypes", "float32,bfloat16")
    result = json.loads((tmp_path / "search_pipeline_quick.json").read_text())
    assert set(result["rows"]) == {"sac", "greedy", "uniform Q4_K", "uniform Q3_K"}
    for row in result["rows"].values():
        assert math.isfinite(row["kld"]["ppl"]) and row["kld"]["kld_mean"] >= 0 and row["size_bytes"] > 0
    assert result["episodes"]["count"] == 4 and 0 < result["episodes"]["eval_share"] < 1
    assert abs(result["evaluator"]["fidelity"]["gap"]) < 0.01   # evaluator vs llama.cpp on the same windows
    by_dtype = result["evaluator"]["dtypes"]   # the fidelity check per evaluator precision (bfloat16 on the CPU)
    assert set(by_dtype) == {"float32", "bfloat16"}
    assert by_dtype["float32"]["fidelity"] == result["evaluator"]["fidelity"]
    assert by_dtype["bfloat16"]["fidelity"]["ppl_evaluator"] != by_dtype["float32"]["fidelity"]["ppl_evaluator"]
    assert abs(by_dtype["bfloat16"]["fidelity"]["gap"]) < 0.05
    assert result["pipeline_seconds"] > 0
    assert "| sac |" in (tmp_path / "search_pipeline_quick.md").read_text()
    mtime = (tmp_path / "work_quick" / "sac.gguf").stat().st_mtime
    _script("search_pipeline.py", "--quick", "--model", tiny, "--work", tmp_path / "work", "--out", tmp_path)
    assert (tmp_path / "work_quick" / "sac.gguf").stat().st_mtime == mtime   # a re-run resumes, redoes nothing


def test_pareto_quick(tiny, tmp_path):
    tables = tmp_path / "tables"
    _script("pareto.py", "--quick", "--model", tiny, "--work", tmp_path / "work", "--out", tmp_path,
            "--tables", tables)
    result = json.loads((tmp_path / "pareto_tiny_quick.json").read_text())
    shipped = list(tables.glob("measured-*.json"))   # the finished table, kept for the next machine
    assert len(shipped) == 1 and json.loads(shipped[0].read_text())["complete"]
    labels = set(result["rows"])
    assert {"base", "llama.cpp Q4_K_M", "llama.cpp Q4_K_M imatrix", "HALO uniform Q3_K"} <= labels
    assert {"greedy @ Q4_K_M", "RAMP-SAC guided @ Q4_K_M seed 0", "evo @ Q4_K_M seed 0"} <= labels
    assert {"greedy + fold @ Q4_K_M", "HALO uniform Q3_K + fold"} <= labels   # C3: folding on, same allocation
    assert result["rows"]["greedy + fold @ Q4_K_M"]["ppl"] != result["rows"]["greedy @ Q4_K_M"]["ppl"]
    q4km = result["rows"]["llama.cpp Q4_K_M"]["size_bytes"]
    assert result["budgets"]["Q4_K_M"] == q4km
    for label, row in result["rows"].items():
        assert math.isfinite(row["ppl"]) and set(row["tasks"]) == {
            "piqa", "hellaswag", "winogrande", "arc_easy", "arc_challenge", "boolq"}, label
        assert row["pp512"] > 0 and row["tg128"] > 0
        if row["budget"]:  # searches stay within their whole-file budget (up to the metadata they add)
            assert row["size_bytes"] <= result["budgets"][row["budget"]] * 1.01, label
    assert (tmp_path / "pareto_tiny_quick.png").stat().st_size > 10_000
    markdown = (tmp_path / "pareto_tiny_quick.md").read_text()
    assert "Scale folding on/off" in markdown
    # the joint searches beside the knapsack they start from: evaluations, ratio and wall time (table + search)
    assert result["table_seconds"] > 0 and "Joint searches against the knapsack" in markdown
    joint = [line for line in markdown.splitlines() if line.startswith("| Q4_K_M | ")]
    assert [line.split(" | ")[2] for line in joint] == ["sac-guided", "evo"]
    for line in joint:
        cells = line.strip("| ").split(" | ")
        assert cells[4] == "3" and float(cells[6]) > 0 and float(cells[7].split(" + ")[1]) > 0, line
    assert {row.get("evaluations") for row in result["rows"].values() if row["method"] in ("sac-guided", "evo")} == {3}
    work = tmp_path / "work" / "tiny_quick"
    greedy = result["rows"]["greedy @ Q4_K_M"]
    for key, row in (("sacg", result["rows"]["RAMP-SAC guided @ Q4_K_M seed 0"]),
                     ("evo", result["rows"]["evo @ Q4_K_M seed 0"])):
        types = [[r["gguf_type"] for r in json.loads((folder / "allocation.json").read_text())["layers"]]
                 for folder in (work / f"{key}-Q4_K_M-s0", work / "greedy-Q4_K_M")]
        if row.get("same_file_as"):   # the knapsack's allocation: the greedy row's file, not benched twice
            assert types[0] == types[1] and row["same_file_as"] == "greedy @ Q4_K_M"
            assert (row["ppl"], row["kld"]) == (greedy["ppl"], greedy["kld"])
            assert not (work / f"{key}-Q4_K_M-s0.bench.json").exists()
        else:
            assert types[0] != types[1] and (work / f"{key}-Q4_K_M-s0.bench.json").exists()
    entries = list((tmp_path / "work" / "tiny_quick" / "base-logits").iterdir())  # every bench shared one base pass
    assert len(entries) == 1 and len(list(entries[0].glob("w*.npy"))) == 2
    _script("pareto.py", "--quick", "--model", tiny, "--work", tmp_path / "work", "--out", tmp_path,
            "--stages", "presets")  # runs nothing new, and still reports every row measured so far
    assert json.loads((tmp_path / "pareto_tiny_quick.json").read_text())["rows"] == result["rows"]
    _script("pareto.py", "--quick", "--model", tiny, "--work", tmp_path / "fresh", "--out", tmp_path,
            "--stages", "presets", "--presets", "none", "--tables", tables)  # a new machine: the results file keeps
    # the rows, and the calibration's cache starts with the shipped table
    assert (tmp_path / "fresh" / "tiny_quick" / "calibration" / "sensitivity" / shipped[0].name).read_text() == \
        shipped[0].read_text()
    assert json.loads((tmp_path / "pareto_tiny_quick.json").read_text())["rows"] == result["rows"]
    assert not list((tmp_path / "fresh" / "tiny_quick").glob("*.bench.json"))   # and nothing was measured again


def test_convergence_quick(tiny, tmp_path):
    _script("convergence.py", "--quick", "--model", tiny, "--variants", "sac:naive", "--seeds", "0,1",
            "--work", tmp_path / "work", "--out", tmp_path)
    result = json.loads((tmp_path / "convergence_tiny_quick.json").read_text())
    assert set(result["variants"]) == {"sac:naive"} and len(result["runs"]) == 2
    for run in result["runs"].values():
        log = [json.loads(line) for line in (tmp_path / "work" / "tiny_quick" / f"{run['variant'].replace(':', '-')}"
                                             f"-s{run['seed']}" / "log.jsonl").read_text().splitlines()]
        assert len(run["curve"]) == len(log) == 4
        feasible = [r["ppl"] for r in log if r["feasible"]]
        assert run["final_ppl"] == (min(feasible) if feasible else None)   # best in-budget episode of the log
        if feasible:   # validation windows differ per seed: the curve is relative to the base PPL on them
            assert run["final_ratio"] == pytest.approx(run["final_ppl"] / run["base_ppl"]) == run["curve"][-1]
        assert run["late_return"] == pytest.approx(sum(r["reward"] for r in log) / len(log))  # 4 episodes < LATE
        assert run["settled_episode"] == 4   # 4 episodes < WINDOW: one window, the last-50 mean itself
        curve = [c for c in run["curve"] if c is not None]
        assert curve == sorted(curve, reverse=True)   # best-so-far never gets worse
        assert math.isfinite(run["test_ppl"]) and run["size_bytes"] > 0
    summary = result["variants"]["sac:naive"]
    finals = [r["final_ppl"] for r in result["runs"].values() if r["final_ppl"] is not None]
    assert summary["seeds_in_budget"] == len(finals) and summary["test_ppl_sd"] >= 0
    assert "| sac:naive |" in (tmp_path / "convergence_tiny_quick.md").read_text()
    assert (tmp_path / "convergence_tiny_quick.png").stat().st_size > 10_000


def test_transfer_quick(tiny, tmp_path):
    _script("transfer.py", "--quick", "--policies", "smollm2-135m", "--targets", tiny, "--work", tmp_path / "work",
            "--out", tmp_path)
    result = json.loads((tmp_path / "transfer_quick.json").read_text())
    (row,) = result["rows"]
    assert row["method"] == "transfer" and row["policy"] == "smollm2-135m" and row["target"] == "tiny"
    assert row["bpw"] <= result["budget_bpw"] + 1e-9 and math.isfinite(row["ppl"]) and row["kld"] >= 0
    assert "| tiny | transfer | smollm2-135m |" in (tmp_path / "transfer_quick.md").read_text()


def test_dynaquant_quick(tiny, tmp_path):
    _script("dynaquant.py", "--quick", "--model", tiny, "--work", tmp_path / "work", "--out", tmp_path)
    result = json.loads((tmp_path / "dynaquant_tiny_quick.json").read_text())
    rows = {row["label"]: row for row in result["torch_rows"]}
    base, nf4, mix = rows["base (source weights, float32)"], rows["uniform nf4"], rows["DynaQuant s0"]
    assert nf4["layer_bytes"] < mix["layer_bytes"] <= base["layer_bytes"]  # bnb bytes: 4.5 bits < mix <= fp16
    assert rows["uniform nf4 + FT"]["fine_tuned_steps"] > 0 and nf4["fine_tuned_steps"] == 0
    assert all(math.isfinite(row["ppl"]) for row in rows.values())
    cpp = {row["label"]: row for row in result["llama_cpp_rows"]}
    assert cpp["RAMP greedy at the size of DynaQuant s0"]["size_bytes"] <= cpp["DynaQuant s0 exported"]["size_bytes"]
    assert "## llama.cpp (exported GGUF files)" in (tmp_path / "dynaquant_tiny_quick.md").read_text()


def test_ray_workers_quick(tiny, tmp_path):
    _script("ray_workers.py", "--quick", "--model", tiny, "--workers", "2", "--work", tmp_path / "work",
            "--out", tmp_path)
    result = json.loads((tmp_path / "ray_workers_tiny_quick.json").read_text())
    assert set(result["rows"]) == {"in-process", "ray-2"}
    ray_row = result["rows"]["ray-2"]
    assert ray_row["workers"] == 2 and ray_row["episodes_per_minute"] > 0 and 0 <= ray_row["learner_wait_share"] <= 1
    assert result["rows"]["in-process"]["speedup"] == 1.0
    assert "| ray-2 |" in (tmp_path / "ray_workers_tiny_quick.md").read_text()


def test_sensitivity_quick(tiny, tmp_path):
    argv = ("sensitivity.py", "--quick", "--model", tiny, "--methods", "fisher,measured", "--measure-blocks", "0",
            "--work", tmp_path / "work", "--out", tmp_path)
    _script(*argv)
    result = json.loads((tmp_path / "sensitivity_tiny_quick.json").read_text())
    assert set(result["rows"]) == {"fisher @ 4.0 bpw", "fisher @ 5.0 bpw"}
    for row in result["rows"].values():   # each knapsack file ran in llama.cpp and kept to its budget
        assert math.isfinite(row["ppl"]) and row["kld"] >= 0 and row["bpw"] > 0
    fisher, measured = result["methods"]["fisher"], result["methods"]["measured"]
    assert fisher["evaluations"] == 0 and 0 < fisher["seconds"] < fisher["search_seconds"]
    assert measured["evaluations"] > 0 and measured["full_evaluations"] > measured["evaluations"]
    by_role = result["correlation"]["fisher"]   # over the 7 layers of block 0 that were measured
    assert by_role["all"]["pairs"] == 28 and -1 <= by_role["all"]["spearman"] <= 1
    assert "| fisher | all | 28 |" in (tmp_path / "sensitivity_tiny_quick.md").read_text()
    mtime = (tmp_path / "work" / "tiny_quick" / "fisher-4.0bpw.gguf").stat().st_mtime
    _script(*argv)   # a re-run resumes: no search, export or bench again
    assert (tmp_path / "work" / "tiny_quick" / "fisher-4.0bpw.gguf").stat().st_mtime == mtime


def test_additivity_quick(tiny, tmp_path):
    _script("additivity.py", "--quick", "--model", tiny, "--pairs", "4", "--work", tmp_path / "work",
            "--out", tmp_path)
    result = json.loads((tmp_path / "additivity_tiny_quick.json").read_text())
    assert set(result["allocations"]) == {"4.0 bpw", "5.0 bpw"}
    for label, row in result["allocations"].items():
        assert row["bpw"] <= float(label.split()[0]) + 1e-9 and row["joint_kld"] > 0 and row["sum_isolated"] > 0
        assert row["joint_over_sum"] == pytest.approx(row["joint_kld"] / row["sum_isolated"])
    kinds = [pair["kind"] for pair in result["pairs"]]
    assert kinds.count("adjacent") == 2 and kinds.count("distant") <= 2
    assert len({tuple(pair["layers"]) for pair in result["pairs"]}) == len(kinds)
    for pair in result["pairs"]:
        assert len(pair["isolated"]) == 2 and pair["joint_kld"] > 0
    # the measured table's knapsack (where the joint searches start): exact on the summed objective, so its sum is
    # at most the Fisher knapsack's at the same budget
    assert set(result["allocations_measured"]) == set(result["allocations"])
    for label, row in result["allocations_measured"].items():
        assert row["bpw"] <= float(label.split()[0]) + 1e-9 and row["joint_kld"] > 0
        assert row["sum_isolated"] <= result["allocations"][label]["sum_isolated"] + 1e-12
    assert "measured table, where the joint searches start" in (tmp_path / "additivity_tiny_quick.md").read_text()
    table = next((tmp_path / "work" / "tiny_quick" / "calibration" / "sensitivity").glob("measured-*.json"))
    measured = json.loads(table.read_text())
    assert measured["complete"] and measured["evaluations"] > 0   # kept for reuse
    first = result
    _script("additivity.py", "--quick", "--model", tiny, "--pairs", "4", "--work", tmp_path / "work",
            "--out", tmp_path)   # a re-run measures no isolated pair again and gives the same numbers
    assert json.loads(table.read_text())["evaluations"] == measured["evaluations"]
    assert json.loads((tmp_path / "additivity_tiny_quick.json").read_text()) == first


def test_train_policy_quick(tiny, tmp_path):
    """The script that fills policies/ trains a guided SAC policy, and its card says what it was measured on."""
    from ramp.agents.policy_io import load_policy_card

    _script("train_policy.py", "--quick", "--model", tiny, "--work", tmp_path / "work", "--policies", tmp_path)
    card = json.loads((tmp_path / "tiny.json").read_text())
    assert card["sac_mode"] == "guided" and card["obs_dim"] == 15
    measured = card["measured"]
    assert measured["kld_test"] >= 0 and measured["file_bytes"] > 0 and measured["knapsack_kld_validation"] >= 0
    tensors, loaded = load_policy_card(str(tmp_path / "tiny.safetensors"))
    assert loaded["sac_mode"] == "guided" and tensors
