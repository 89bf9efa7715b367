"""Sensitivity estimates against the measured table: their cost, how well they rank, and their knapsack files.

    python benchmarks/sensitivity.py [--model smollm2-135m|gemma3-270m|PATH] [--methods measured,fisher,noise]
                                     [--measure-blocks all|0,6,12] [--max-chunks 40] [--quick]

For every method (`ramp search --algo greedy --sensitivity M`):
  * the wall time of its table (the table's own compute, from its cache file) and of the whole search command
    (model load, weight cache, base pass and the knapsack included);
  * Spearman and Pearson (of log values) against the measured table, over every (layer, width) pair and
    within each layer role;
  * the knapsack allocation at the Pareto benchmark's five whole-file budgets (benchmarks/results/
    pareto_<model>.json), exported by `halo export` and measured by `halo bench` (WikiText-2 raw TEST, ctx 512,
    `--max-chunks` windows): PPL, KLD and same-top against the base, beside the Pareto run's rows of the measured
    table ("greedy @ budget") where that file has them.
`--measure-blocks 0,6,12` measures the exact table only for the layers of those blocks (the correlations are then
over those layers; the full table's allocations are the Pareto rows), for a model whose full table takes hours.
Searches see only WikiText-2 validation text.  Resumable like the other scripts; the tables are cached beside
the calibration.  Results: benchmarks/results/sensitivity_<model>.{json,md} (`_quick` for --quick).
"""

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

from common import BIN, ROOT, base_gguf, job, model_spec, write_json, write_text

METHODS = ("measured", "fisher", "noise")
ROLES = ("q", "k", "v", "o", "gate", "up", "down")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--measure-blocks", default="all", help="blocks whose exact table is measured (all: every one)")
    parser.add_argument("--max-chunks", type=int, default=40)
    parser.add_argument("--bench-budgets", default="all",
                        help="budgets whose files are benched in llama.cpp, in this order (all, none, or labels)")
    parser.add_argument("--quick", action="store_true", help="tiny settings for a smoke run")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "sensitivity", help="files and searches go here")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    tag, name, steps = job(args, "sensitivity")
    spec, work, methods = model_spec(args.model), steps.work, args.methods.split(",")
    chunks = 2 if args.quick else args.max_chunks
    search = ["--eval-samples", "2", "--eval-seq-len", "64"] if args.quick else []
    cal = work / "calibration"
    args.out.mkdir(parents=True, exist_ok=True)
    steps.run("calibrate", [BIN / "ramp", "calibrate", "--model", spec, "--out", cal,
                            *(["--samples", "8", "--seq-len", "128"] if args.quick else [])], cal / "manifest.json")
    base = base_gguf(spec, work)
    pareto_path = args.out / f"pareto_{tag}.json"
    pareto = json.loads(pareto_path.read_text()) if pareto_path.exists() and not args.quick else {}
    budgets = ({label: ["--target-size", str(size)] for label, size in pareto["budgets"].items()} if pareto
               else {"4.0 bpw": ["--budget", "4.0"], "5.0 bpw": ["--budget", "5.0"]})
    blocks = None if args.measure_blocks == "all" else {int(b) for b in args.measure_blocks.split(",")}
    result = {"model": args.model, "spec": spec, "quick": args.quick, "budgets": pareto.get("budgets", budgets),
              "test_text": f"wikitext-2 raw test, ctx 512, first {chunks} windows",
              "measure_blocks": args.measure_blocks,
              "base_note": "KLD and PPL against the source GGUF's dequantized weights (a re-quantized 4-bit file)",
              "methods": {}, "rows": {}, "correlation": {}, "seconds": steps.seconds}
    earlier = args.out / f"{name}.json"
    if earlier.exists():
        saved = json.loads(earlier.read_text())   # rows and costs of methods measured before stay
        result["rows"], result["methods"] = saved.get("rows", {}), saved.get("methods", {})
        if "measured" not in methods:   # what the measured table gave stays: this run has none to compare with
            result["correlation"], result["measure_blocks"] = saved.get("correlation", {}), saved.get("measure_blocks")

    allocations = {}   # (method, budget label) -> its run folder: every table and allocation first, benches last
    for method in methods:
        if method == "measured" and blocks is not None:
            continue   # its allocations need the whole table: the Pareto rows stand for them
        first = None
        for label, budget in budgets.items():
            key = f"{method}-{label.replace(' ', '')}"
            out = allocations[method, label] = work / key
            if first is None:   # one real search: it computes (or reuses) the table and times the whole command
                steps.run(f"search_{key}", [BIN / "ramp", "search", "--model", spec, "--algo", "knapsack",
                                            "--sensitivity", method, *budget, "--calibration", cal, *search,
                                            "--out", out], out / "summary.json")
                first = (out, budget)
                result["methods"][method] = _table_cost(out, steps.seconds[f"search_{key}"])
            elif not (out / "allocation.json").exists():   # the same table, the knapsack for another budget
                _knapsack(cal, *first, budget, out)
    if blocks is not None and "measured" in methods:
        result["methods"]["measured"] = _measure_blocks(spec, cal, blocks, search, result["methods"].get("measured"))
    tables = {m: json.loads(p.read_text()) for m in METHODS for p in sorted((cal / "sensitivity").glob(f"{m}-*.json"))}
    if "measured" in tables:
        for method in (m for m in tables if m != "measured"):
            result["correlation"][method] = correlations(tables[method]["table"], tables["measured"]["table"],
                                                         _roles(cal))
    for label in budgets:
        row = pareto.get("rows", {}).get(f"greedy @ {label}")
        if row is not None and f"measured @ {label}" not in result["rows"]:
            keep = ("size_bytes", "bpw", "ppl", "kld", "same_top")
            result["rows"][f"measured @ {label}"] = {k: row[k] for k in keep} | {
                "method": "measured", "budget": label, "source": f"{pareto_path.name} (greedy @ {label})"}
    _save(args.out / name, result)
    order = list(budgets) if args.bench_budgets == "all" else [b for b in args.bench_budgets.split(",") if b in budgets]
    for method, label in [(m, b) for b in order for m in methods if (m, b) in allocations]:
        out = allocations[method, label]   # the long part: each file in llama.cpp, saved as it lands
        key = out.name
        report = steps.export_and_bench(key, spec, ["--allocation", out / "allocation.json"], cal, base,
                                        work / f"{key}.gguf", chunks)
        result["rows"][f"{method} @ {label}"] = _row(method, label, report)
        exact = allocations.get(("measured", label))
        if exact is not None:
            result["rows"][f"{method} @ {label}"]["same_as_measured"] = _bits(out) == _bits(exact)
        _save(args.out / name, result)
    _save(args.out / name, result)
    print(_markdown(result))


def _measure_blocks(spec: str, cal: Path, blocks: set, search: list, earlier: dict | None) -> dict:
    """The exact table for the layers of `blocks` only, in this process, into the same cache a full run resumes
    (`earlier`: what a previous run of this script reported, kept when its table holds those blocks already)."""
    layers = json.loads((cal / "manifest.json").read_text())["layers"]
    wanted = {row["gguf_name"] for row in layers if row["block"] in blocks}
    for path in (cal / "sensitivity").glob("measured-*.json"):
        if earlier and wanted <= set(json.loads(path.read_text())["table"]):
            return earlier
    from ramp.config.options import search_config
    from ramp.engine.context import prepare
    from ramp.sensitivity import cache, measured

    extra = dict(zip(search[::2], search[1::2]))
    config = search_config(model=spec, algo="knapsack", sensitivity="measured", calibration=str(cal),
                           **{k.lstrip("-").replace("-", "_"): int(v) for k, v in extra.items()})
    import tempfile

    with tempfile.TemporaryDirectory(dir=cal.parent) as out:
        ctx = prepare(config, Path(out))
        path = cache.path_for(ctx, "measured")
        record = cache.load(path, "measured", cache.settings(ctx, "measured"))
        started = time.perf_counter()
        layers = [layer for layer in ctx.layers if layer.block in blocks]
        record = measured.measure(ctx, record, path, layers)
        types = sum(len(set(ctx.evaluator.cache.candidates[layer.gguf_name])) for layer in ctx.layers)
    per_eval = record.seconds / max(record.evaluations, 1)
    return {"seconds": record.seconds, "evaluations": record.evaluations, "full_evaluations": types,
            "full_seconds_estimate": per_eval * types, "wall_seconds": time.perf_counter() - started,
            "note": f"blocks {sorted(blocks)} only; the full table's time is estimated at {per_eval:.2f} s an "
                    "evaluation"}


def _knapsack(cal: Path, first: Path, first_budget: list, budget: list, out: Path) -> None:
    """`ramp search --algo greedy`'s allocation for `budget` from the table and budget of the search in `first`
    (the bytes besides the layers follow from its whole-file budget), without loading the model again."""
    from calibration import artifact
    from halo import allocation as alloc_mod
    from ramp.engine.knapsack import allocate
    from ramp.mdp.budget import make_budget

    layers, summary = artifact.read(cal).layers, json.loads((first / "summary.json").read_text())
    record = json.loads((first / "sensitivity.json").read_text())
    table, actions = record["table"], record["settings"]["actions"]
    params = sum(layer.params for layer in layers)
    if budget[0] == "--target-size":
        other = int(round(int(first_budget[1]) - summary["budget"]["target"] * params / 8))
        target = make_budget(layers, actions, target_size=int(budget[1]), other_bytes=other)
    else:
        target = make_budget(layers, actions, target=float(budget[1]))
    bits = allocate(layers, actions, table, target)
    out.mkdir(parents=True, exist_ok=True)
    alloc_mod.save(alloc_mod.resolve(layers, bits, {"method": "knapsack", "budget": {"target": target.target},
                                                    "from": str(first)}), out / "allocation.json")


def _bits(out: Path) -> list:
    return [layer["bits"] for layer in json.loads((out / "allocation.json").read_text())["layers"]]


def _table_cost(out: Path, search_seconds: float) -> dict:
    table = json.loads((out / "sensitivity.json").read_text())
    return {"seconds": table["seconds"], "evaluations": table["evaluations"], "search_seconds": search_seconds}


def _roles(cal: Path) -> dict:
    return {row["gguf_name"]: row["role"] for row in json.loads((cal / "manifest.json").read_text())["layers"]}


def correlations(estimate: dict, exact: dict, roles: dict) -> dict:
    """Against the pairs the measured table holds, overall and within each role: Spearman over every pair (a
    type that reproduces the source's grid costs exactly 0 in both, a tie), and over the pairs above 0 in both
    with Pearson of their log values."""
    from scipy.stats import pearsonr, spearmanr

    pairs = [(roles[layer], estimate[layer][bits], value) for layer, row in exact.items()
             for bits, value in row.items() if layer in estimate]
    out = {}
    for role in ("all", *ROLES):
        every = np.array([(e, m) for r, e, m in pairs if role in ("all", r)])
        positive = every[(every > 0).all(axis=1)] if len(every) else every
        if len(positive) < 3:
            continue
        out[role] = {"pairs": len(every), "spearman": float(spearmanr(every[:, 0], every[:, 1]).statistic),
                     "positive_pairs": len(positive),
                     "spearman_positive": float(spearmanr(positive[:, 0], positive[:, 1]).statistic),
                     "pearson_log": float(pearsonr(*np.log(positive).T).statistic),
                     "zero_in_both": int(((every == 0).all(axis=1)).sum())}
    return out


def _row(method: str, label: str, report: dict) -> dict:
    kld = report.get("kld", {})
    return {"method": method, "budget": label, "size_bytes": report["size_bytes"], "bpw": report["bpw"],
            "ppl": report["perplexity"]["ppl"], "kld": kld.get("kld_mean"), "same_top": kld.get("same_top")}


def _save(stem: Path, result: dict) -> None:
    write_json(stem.with_suffix(".json"), result)
    write_text(stem.with_suffix(".md"), _markdown(result))


def _markdown(result: dict) -> str:
    lines = [f"# Sensitivity estimates: {result['model']}", "",
             f"Test text: {result['test_text']}. {result['base_note']}.", "", "## Cost", "",
             "| method | table s | evaluations | whole search s |", "|---|---|---|---|"]
    for method, cost in result["methods"].items():
        whole = cost.get("search_seconds")
        lines.append(f"| {method} | {cost['seconds']:.0f} | {cost['evaluations']} | "
                     f"{'' if whole is None else f'{whole:.0f}'} |")
        if "note" in cost:
            lines.append(f"| {method} (full, estimated) | {cost['full_seconds_estimate']:.0f} | "
                         f"{cost['full_evaluations']} | |")
    lines += ["", "## Rank agreement with the measured table", "",
              "| method | role | pairs | Spearman | pairs > 0 | Spearman (> 0) | Pearson (log, > 0) | 0 in both |",
              "|---|---|---|---|---|---|---|---|"]
    for method, by_role in result["correlation"].items():
        for role, c in by_role.items():
            lines.append(f"| {method} | {role} | {c['pairs']} | {c['spearman']:.3f} | {c['positive_pairs']} | "
                         f"{c['spearman_positive']:.3f} | {c['pearson_log']:.3f} | {c['zero_in_both']} |")
    lines += ["", "## Knapsack allocations in llama.cpp", "", "| budget | method | size MB | PPL | KLD | same-top | "
              "KLD / measured |", "|---|---|---|---|---|---|---|"]
    rows = result["rows"]
    for label in result["budgets"]:
        exact = rows.get(f"measured @ {label}")
        for method in METHODS:
            row = rows.get(f"{method} @ {label}")
            if row is None:
                continue
            ratio = row["kld"] / exact["kld"] if exact and exact.get("kld") and row.get("kld") is not None else math.nan
            lines.append(f"| {label} | {method} | {row['size_bytes'] / 1e6:.2f} | {row['ppl']:.3f} | "
                         f"{row['kld']:.4f} | {row['same_top']:.4f} | {ratio:.3f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
