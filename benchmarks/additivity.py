"""How far the layers' damage adds up: the joint KL of whole allocations against the sum of their layers' own.

    python benchmarks/additivity.py [--model smollm2-135m|gemma3-270m|PATH] [--pairs 24] [--budgets small,mid]
                                    [--quick]

The knapsack (`ramp search --algo knapsack`) is exact when the KL divergence of an allocation is the sum of what
each of its layers costs alone; a search on the joint loss (evo, SAC) can only beat it through what does not add
up.  Measured here, on the search's own evaluator (validation windows, the exact libggml bytes):
  * for the knapsack allocation (the default Fisher table) at each of the Pareto benchmark's five whole-file
    budgets: the joint KLD, the sum of the isolated KLDs of its (layer, type) pairs (each measured alone, exact),
    and the sum the Fisher table predicted;
  * the same for the knapsack allocation on the measured table (the one the joint searches of
    `benchmarks/pareto.py` start from): whatever a joint search can win over it lies in its joint / sum.  The whole
    measured table is needed; `--tables` (default benchmarks/results/tables/<model>) supplies a shipped one;
  * for a sample of layer pairs, adjacent (the same block, or the same role in consecutive blocks) and distant
    (the same role half the model apart), both at the smallest width: the joint KLD against the two isolated ones.
The measured table, completed here, stays in its cache beside the calibration (searches reuse it).
Results: benchmarks/results/additivity_<model>.{json,md}, saved as each part lands; a re-run resumes.
"""

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from common import BIN, ROOT, TABLES, job, model_spec, seed_tables, write_json, write_text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--pairs", type=int, default=24, help="layer pairs, half adjacent and half distant")
    parser.add_argument("--budgets", default="",
                        help="comma-separated Pareto budget labels to measure (default all five)")
    parser.add_argument("--quick", action="store_true", help="tiny settings for a smoke run")
    parser.add_argument("--tables", type=Path, default=None,
                        help="shipped sensitivity tables to start from (default benchmarks/results/tables/<model>, "
                             "none with --quick)")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "additivity")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    tag, name, steps = job(args, "additivity")
    spec, cal = model_spec(args.model), steps.work / "calibration"
    steps.run("calibrate", [BIN / "ramp", "calibrate", "--model", spec, "--out", cal,
                            *(["--samples", "8", "--seq-len", "128"] if args.quick else [])], cal / "manifest.json")
    tables = args.tables or (None if args.quick else TABLES / tag)
    if tables:   # the measured table of an earlier machine (same calibration and windows): not measured again
        seed_tables(cal, tables)
    pareto_path = args.out / f"pareto_{tag}.json"
    sizes = json.loads(pareto_path.read_text())["budgets"] if pareto_path.exists() and not args.quick else {}
    options = {"eval_samples": 2, "eval_seq_len": 64} if args.quick else {}
    wanted_budgets = [b for b in args.budgets.split(",") if b]
    if unknown := [b for b in wanted_budgets if sizes and b not in sizes]:
        raise SystemExit(f"additivity: unknown budget {', '.join(unknown)} (the Pareto run has {', '.join(sizes)})")
    sizes = {label: size for label, size in sizes.items() if not wanted_budgets or label in wanted_budgets}
    budgets = {label: {"target_size": size} for label, size in sizes.items()} or {
        "4.0 bpw": {"budget": 4.0}, "5.0 bpw": {"budget": 5.0}}

    from ramp import sensitivity
    from ramp.config.options import search_config
    from ramp.engine.context import prepare

    first = next(iter(budgets.values()))
    config = search_config(model=spec, algo="knapsack", calibration=str(cal), **first, **options)
    result = {"model": args.model, "spec": spec, "quick": args.quick, "windows": (
        f"{config.windows.samples} x {config.windows.seq_len} WikiText-2 validation tokens (the search's)"),
        "base_note": "KLD against the source GGUF's dequantized weights (a re-quantized 4-bit file)",
        "allocations": {}, "allocations_measured": {}, "pairs": []}
    with tempfile.TemporaryDirectory(dir=steps.work) as out:
        ctx = prepare(config, Path(out))
        fisher = sensitivity.table(ctx, "fisher").table
        exact_path = sensitivity.cache.path_for(ctx, "measured")
        exact = sensitivity.cache.load(exact_path, "measured", sensitivity.cache.settings(ctx, "measured"))
        table = sensitivity.measured.measure(ctx, exact, exact_path).table   # nothing left to measure when shipped
        for label, budget in budgets.items():
            bits = _knapsack(ctx, fisher, budget, first)
            predicted = sum(fisher[layer.gguf_name][str(b)] for layer, b in zip(ctx.layers, bits))
            result["allocations"][label] = _joint_against_sum(ctx, table, bits) | {"sum_fisher": predicted}
            _save(args.out / name, result)
        for label, budget in budgets.items():   # the joint searches' starting point: their room is its joint / sum
            result["allocations_measured"][label] = _joint_against_sum(ctx, table,
                                                                       _knapsack(ctx, table, budget, first))
            _save(args.out / name, result)
        low = min(ctx.config.actions)
        for pair in _pairs(ctx.layers, args.pairs, np.random.default_rng(0)):
            types = [None] * len(ctx.layers)
            for i in pair["layers"]:
                types[i] = _actual(ctx.layers[i], low)
            joint = ctx.evaluator.evaluate(types).kld
            alone = [table[ctx.layers[i].gguf_name][str(low)] for i in pair["layers"]]
            result["pairs"].append(pair | {"names": [ctx.layers[i].gguf_name for i in pair["layers"]], "bits": low,
                                           "joint_kld": joint, "isolated": alone,
                                           "joint_over_sum": joint / sum(alone) if sum(alone) else None})
            _save(args.out / name, result)
    _save(args.out / name, result)
    print(_markdown(result))


def _joint_against_sum(ctx, table: dict, bits: list[int]) -> dict:
    """An allocation's size, its joint KLD on the evaluator and the sum of its layers' isolated KLDs in `table`."""
    alloc, outcome = ctx.outcome(bits)
    isolated = sum(table[layer.gguf_name][str(b)] for layer, b in zip(ctx.layers, bits))
    return {"bytes": alloc.bytes, "bpw": outcome.bpw, "joint_kld": outcome.kld, "sum_isolated": isolated,
            "joint_over_sum": outcome.kld / isolated if isolated else None}


def _actual(layer, bits):
    from halo import allocation as alloc_mod

    return alloc_mod.choice(layer, bits).actual


def _knapsack(ctx, table: dict, budget: dict, first: dict) -> list[int]:
    """The knapsack allocation for `budget` (a whole-file size is turned into the layers' bpw with what the rest of
    the file costs, known from the context's own `first` budget)."""
    from ramp.engine.knapsack import allocate
    from ramp.mdp.budget import make_budget

    actions, params = list(ctx.config.actions), sum(layer.params for layer in ctx.layers)
    if "target_size" in budget:
        other = int(round(first["target_size"] - ctx.budget.target * params / 8))
        target = make_budget(ctx.layers, actions, target_size=budget["target_size"], other_bytes=other)
    else:
        target = make_budget(ctx.layers, actions, target=budget["budget"])
    return allocate(ctx.layers, actions, table, target)


def _pairs(layers, count: int, rng) -> list[dict]:
    """`count` layer pairs: half adjacent (two roles of one block, or one role in consecutive blocks), half
    distant (one role, blocks half the model apart)."""
    blocks = max(layer.block for layer in layers) + 1
    by = {(layer.block, layer.role): layer.index for layer in layers}
    roles = sorted({layer.role for layer in layers})   # sorted: a set's order changes from run to run
    adjacent, distant = [], []
    for layer in layers:
        mates = [by[layer.block, role] for role in roles if (layer.block, role) in by
                 and by[layer.block, role] > layer.index]
        mates += [by[layer.block + 1, layer.role]] if (layer.block + 1, layer.role) in by else []
        adjacent += [(layer.index, m) for m in mates]
        far = layer.block + blocks // 2
        if (far, layer.role) in by:
            distant.append((layer.index, by[far, layer.role]))
    pick = []
    for kind, pool in (("adjacent", adjacent), ("distant", distant)):
        chosen = rng.choice(len(pool), size=min(count // 2, len(pool)), replace=False) if pool else []
        pick += [{"kind": kind, "layers": list(pool[int(k)])} for k in sorted(chosen)]
    return pick


def _save(stem: Path, result: dict) -> None:
    write_json(stem.with_suffix(".json"), result)
    write_text(stem.with_suffix(".md"), _markdown(result))


def _allocation_cells(label: str, row: dict) -> str:
    """A markdown row's cells for one allocation: budget, size, bpw, joint, sum and their ratio."""
    ratio = "" if row["joint_over_sum"] is None else f"{row['joint_over_sum']:.3f}"
    return (f"| {label} | {row['bytes'] / 1e6:.2f} | {row['bpw']:.3f} | {row['joint_kld']:.5f} | "
            f"{row['sum_isolated']:.5f} | {ratio} |")


def _markdown(result: dict) -> str:
    lines = [f"# Additivity of the KL divergence: {result['model']}", "",
             f"Scored on {result['windows']}. {result['base_note']}.", "",
             "## Knapsack allocations (Fisher table): joint against summed", "",
             "| budget | MB (layers) | bpw | joint KLD | sum of isolated | joint / sum | Fisher's sum |",
             "|---|---|---|---|---|---|---|"]
    for label, row in result["allocations"].items():
        lines.append(f"{_allocation_cells(label, row)} {row['sum_fisher']:.5f} |")
    lines += ["", "## Knapsack allocations (measured table, where the joint searches start): joint against summed",
              "",
              "| budget | MB (layers) | bpw | joint KLD | sum of isolated (the knapsack's objective) | joint / sum |",
              "|---|---|---|---|---|---|"]
    for label, row in result.get("allocations_measured", {}).items():
        lines.append(_allocation_cells(label, row))
    lines += ["", "## Layer pairs at the smallest width", "",
              "| kind | layers | joint KLD | isolated | joint / sum |", "|---|---|---|---|---|"]
    for row in result["pairs"]:
        ratio = "" if row["joint_over_sum"] is None else f"{row['joint_over_sum']:.3f}"
        lines.append(f"| {row['kind']} | {' + '.join(row['names'])} | {row['joint_kld']:.5f} | "
                     f"{' + '.join(f'{v:.5f}' for v in row['isolated'])} | {ratio} |")
    for kind in ("adjacent", "distant"):
        ratios = [r["joint_over_sum"] for r in result["pairs"] if r["kind"] == kind and r["joint_over_sum"]]
        if ratios:
            lines.append(f"\n{kind}: joint / sum median {np.median(ratios):.3f} (range {min(ratios):.3f}-"
                         f"{max(ratios):.3f}, {len(ratios)} pairs)")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
