"""The Pareto benchmark: every method as an exported GGUF measured in llama.cpp, at several file sizes.

    python benchmarks/pareto.py [--model smollm2-135m|gemma3-270m|PATH] [--seeds 0,1,2] [--episodes 200]
                                [--stages presets,uniform,greedy,sac,evo,fold] [--quick]

Rows (each a file written by HALO or llama.cpp and measured by `halo bench` on WikiText-2 raw TEST, ctx 512,
`--max-chunks` windows, KLD/same-top vs the base, the task subset, pp512/tg128):
  * llama.cpp presets Q3_K_S/M/L, Q4_K_S/M, Q5_K_S/M, Q6_K from HALO's F32 base GGUF, without and with the
    calibration's imatrix;
  * HALO uniform Q3_K, Q4_K, Q5_K, Q6_K, Q8_0 (imatrix);
  * scale folding (claim C3): uniform Q3_K and the greedy allocations at the two smallest budgets, exported
    again with --scale-fold;
  * greedy (`--algo knapsack`: sensitivities measured once, the knapsack solved per budget), RAMP-SAC guided
    (`--algo sac`, its default mode, decoding every episode with the knapsack from the same measured table) and
    evo (`--algo evo` from the same table, given SAC's `--episodes` evaluations), one search per budget and seed
    each, at five whole-file sizes: the exact Q3_K_M and Q4_K_M file sizes, and three more between the smallest
    reachable file (uniform 3 bits) and Q6_K.  Their wall times are in `seconds`, beside the table's own
    (`search_greedy-*`, which measures it once).
Rows labelled `RAMP-SAC @` (method `sac`) in an older results file are the paper's SAC (`--sac-mode paper`),
which this script no longer runs; they stay as measured.
Searches see only WikiText-2 validation text.  Everything resumes: a finished step is skipped on re-run, and
the results files are rewritten after every measured row; a run in a fresh --work folder (a new machine) keeps
the rows of the results file that it does not measure again, when that file was measured with the same model,
windows, tasks and budgets (delete it to start over).
Results: benchmarks/results/pareto_<model>.{json,md,png} (`_quick` for --quick).
"""

import argparse
import json
import statistics
import sys
from pathlib import Path

from common import (  # the script's own folder is on sys.path
    BIN,
    ROOT,
    TABLES,
    base_gguf,
    f32_gguf,
    job,
    keep_tables,
    model_spec,
    resume_flag,
    save_png,
    seed_tables,
    write_json,
    write_text,
)

PRESETS = ["Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_K_S", "Q4_K_M", "Q5_K_S", "Q5_K_M", "Q6_K"]
UNIFORM = ["Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_0"]
TASKS = "piqa,hellaswag,winogrande,arc_easy,arc_challenge,boolq"
STAGES = ("presets", "uniform", "greedy", "sac", "evo", "fold")
JOINT = {"sac-guided": "sacg", "evo": "evo"}  # joint-KL searches from the knapsack's table: method -> step key
# reported as acc (yes/no answers; winogrande's acc_norm equals acc), the others as acc_norm
ACC_TASKS = ("boolq", "winogrande")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--max-chunks", type=int, default=40)
    parser.add_argument("--tasks", default=TASKS)
    parser.add_argument("--limit", type=int, default=100,
                        help="first N items of each task, the same for every row (100: ~2.4 of the ~5.4 minutes a "
                             "row takes here; at this model size accuracies sit near chance, PPL and KLD separate the "
                             "rows)")
    parser.add_argument("--stages", default=",".join(STAGES))
    parser.add_argument("--budgets", default=None, help="only these budget labels (e.g. Q4_K_M,Q3_K_M)")
    parser.add_argument("--presets", default=",".join(PRESETS),
                        help="llama.cpp presets to bench (all preset files are made: their sizes set the budgets)")
    parser.add_argument("--uniform", default=",".join(UNIFORM), help="HALO uniform types to bench (Q3_K always)")
    parser.add_argument("--quick", action="store_true", help="tiny settings for a smoke run")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "pareto", help="files and searches go here")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--tables", type=Path, default=None,
                        help="finished sensitivity tables are copied from and to here (default "
                             "benchmarks/results/tables/<model>, none with --quick): a new machine skips the measured "
                             "table's 37-90 min")
    args = parser.parse_args()
    if args.quick:  # 1 preset, 1 uniform type, 1 budget, 1 seed, 2 windows, 2 items a task
        args.seeds, args.budgets = "0", args.budgets or "Q4_K_M"
    tag, name, steps = job(args, "pareto")
    spec = model_spec(args.model)
    work, stages = steps.work, set(args.stages.split(","))
    presets, uniform = (["Q4_K_M"], ["Q3_K"]) if args.quick else (PRESETS, UNIFORM)
    bench_presets, bench_uniform = set(args.presets.split(",")), set(args.uniform.split(",")) | {"Q3_K"}
    chunks = 2 if args.quick else args.max_chunks
    bench_args = ("--tasks", args.tasks, "--limit", str(2 if args.quick else args.limit))
    search = ["--eval-samples", "2", "--eval-seq-len", "64"] if args.quick else []
    episodes = 3 if args.quick else args.episodes   # joint evaluations of each SAC and evo search
    sac_args = ["--episodes", str(episodes)] + (["--warmup-episodes", "2", "--updates-per-episode", "2"]
                                                if args.quick else [])
    args.out.mkdir(parents=True, exist_ok=True)

    cal = work / "calibration"
    steps.run("calibrate", [BIN / "ramp", "calibrate", "--model", spec, "--out", cal,
                            *(["--samples", "8", "--seq-len", "128"] if args.quick else [])], cal / "manifest.json")
    tables = args.tables or (None if args.quick else TABLES / tag)
    if tables:   # the measured table of an earlier machine, when shipped (same calibration and windows)
        seed_tables(cal, tables)
    base = base_gguf(spec, work)
    f32 = f32_gguf(spec, work)  # what llama.cpp's presets are quantized from
    result = {"model": args.model, "spec": spec, "quick": args.quick, "budgets": {}, "rows": {},
              "test_text": f"wikitext-2 raw test, ctx 512, first {chunks} windows",
              "tasks": f"{args.tasks}: first {bench_args[3]} items each", "seconds": steps.seconds}
    earlier = _earlier(args.out / f"{name}.json", result)
    rows, result["budgets"] = result["rows"], earlier.get("budgets", {})
    rows.update(earlier.get("rows", {}))  # measured before, perhaps on another machine
    done = set(rows)

    def wanted(stage: str, row: str) -> bool:
        """Measure `row` now: its stage was asked for and the results file does not hold it yet."""
        return stage in stages and row not in done

    def save() -> None:
        result["seconds"] = earlier.get("seconds", {}) | steps.seconds  # wall times, also of earlier machines
        result["table_seconds"] = _table_seconds(cal) or earlier.get("table_seconds")  # once the greedy step made it
        write_json(args.out / f"{name}.json", result)
        write_text(args.out / f"{name}.md", _markdown(result))
        _plot(result, args.out / f"{name}.png")

    def measure(key: str, run: bool, what: list | None = None) -> dict | None:
        """Bench work/<key>.gguf (exported first from `what`, unless it is a preset) when `run`; otherwise the
        report an earlier run measured under the same key, or None."""
        if not run:
            return steps.measured(key)
        if what is None:
            return steps.bench(key, work / f"{key}.gguf", base, chunks, bench_args)
        return steps.export_and_bench(key, spec, what, cal, base, work / f"{key}.gguf", chunks, bench_args)

    def keep(label: str, method: str, report: dict | None, budget=None, seed=None, row: str | None = None) -> None:
        if report is not None:  # None: not run now and not in this work folder (an earlier results row stays)
            rows[row or label] = _row(label, method, report, budget, seed)
            if method in JOINT:  # how many joint evaluations this search was given
                rows[row or label]["evaluations"] = episodes
            save()

    def keep_joint(label: str, method: str, key: str, out: Path, run: bool, budget: str, seed: int, row: str):
        """A joint search's row: its file benched; or, when its answer is the knapsack's allocation (so its file is
        the greedy row's, byte for byte: same types, same calibration), the greedy row's numbers, marked as such."""
        greedy = rows.get(f"greedy @ {budget}")
        if run and greedy and _same_types(out / "allocation.json", work / f"greedy-{budget}" / "allocation.json"):
            print(f"[{key}] the answer is the knapsack's allocation: the greedy row's file and numbers", flush=True)
            rows[row] = dict(greedy, label=label, method=method, seed=seed, same_file_as=greedy["label"],
                             evaluations=episodes)
            save()
            return
        keep(label, method, measure(key, run, ["--allocation", out / "allocation.json"]), budget, seed, row)

    keep("base", "base", steps.measured("base") if "base" in rows else steps.bench("base", base, base, chunks,
                                                                                   bench_args))

    for preset in presets:  # presets come first: their sizes define the budgets
        for imatrix in (False, True):
            label = f"llama.cpp {preset}" + (" imatrix" if imatrix else "")
            path = work / f"preset-{preset}{'-imatrix' if imatrix else ''}.gguf"
            steps.run(f"preset_{path.stem}", [BIN / "halo", "preset", "--model", spec, "--preset", preset, "--base",
                                              f32, *(["--calibration", cal] if imatrix else []), "--out", path], path)
            keep(label, "llama.cpp", measure(path.stem, wanted("presets", label) and preset in bench_presets))
    for qtype in uniform:  # Q3_K always: the smallest reachable file bounds the budgets
        label, key = f"HALO uniform {qtype}", f"uniform-{qtype}"
        if qtype == "Q3_K":
            steps.export(key, spec, ["--uniform", qtype], cal, work / f"{key}.gguf")
        keep(label, "uniform", measure(key, wanted("uniform", label) and qtype in bench_uniform or (
            qtype == "Q3_K" and label not in rows), ["--uniform", qtype]))
    # C3 at the smallest file: uniform 3 bits, scale folding on
    keep("HALO uniform Q3_K + fold", "fold", measure("uniform-fold-Q3_K", wanted("fold", "HALO uniform Q3_K + fold"),
                                                      ["--uniform", "Q3_K", "--scale-fold"]))

    budgets = result["budgets"] = _budgets(work, presets)
    if earlier.get("budgets") and earlier["budgets"] != budgets:  # other preset sizes: its budget rows compare nothing
        print(f"pareto: budgets changed since {args.out / f'{name}.json'}; dropping its search rows", flush=True)
        for key in [k for k, r in rows.items() if r.get("budget")]:
            del rows[key]
            done.discard(key)
    fold_budgets = list(budgets)[:2]  # C3 looks at the two smallest
    selected = args.budgets.split(",") if args.budgets else list(budgets)
    for label, size in budgets.items():  # budgets not selected (or stages not run) report what was measured
        here = label in selected
        out, row = work / f"greedy-{label}", f"greedy @ {label}"
        if here and (wanted("greedy", row) or stages & {"sac", "evo"}):   # the joint rows compare with its file
            # the exact table (its rows stay what they were), measured once beside the calibration, for every budget
            steps.run(f"search_greedy-{label}", [BIN / "ramp", "search", "--model", spec, "--algo", "knapsack",
                                                 "--sensitivity", "measured", "--target-size", str(size),
                                                 "--calibration", cal, *search, "--out", out], out / "summary.json")
            if tables:   # the table is finished now: keep it for the next machine before the long searches
                keep_tables(cal, tables)
        report = measure(f"greedy-{label}", wanted("greedy", row) and here, ["--allocation", out / "allocation.json"])
        keep(row, "greedy", report, label)
        if label in fold_budgets:  # C3: the same allocation, scale folding on
            keep(f"greedy + fold @ {label}", "fold", measure(
                f"greedy-fold-{label}", wanted("fold", f"greedy + fold @ {label}") and here and report is not None,
                ["--allocation", out / "allocation.json", "--scale-fold"]), label)
        for seed in [int(s) for s in args.seeds.split(",")]:
            key, out = f"sacg-{label}-s{seed}", work / f"sacg-{label}-s{seed}"
            row = f"RAMP-SAC guided @ {label} seed {seed}"
            if wanted("sac", row) and here:
                steps.run(f"search_{key}", [
                    BIN / "ramp", "search", "--model", spec, "--algo", "sac", "--sac-mode", "guided",
                    "--sensitivity", "measured", "--target-size", str(size), "--calibration", cal,
                    "--seed", str(seed), *sac_args, *search, "--out", out, *resume_flag(out)], out / "summary.json")
            keep_joint(f"RAMP-SAC guided @ {label}", "sac-guided", key, out, wanted("sac", row) and here, label,
                       seed, row)
            key, out, row = f"evo-{label}-s{seed}", work / f"evo-{label}-s{seed}", f"evo @ {label} seed {seed}"
            if wanted("evo", row) and here:   # from the greedy row's allocation (same table), SAC's evaluations
                steps.run(f"search_{key}", [
                    BIN / "ramp", "search", "--model", spec, "--algo", "evo", "--sensitivity", "measured",
                    "--target-size", str(size), "--calibration", cal, "--seed", str(seed), "--episodes",
                    str(episodes), *search, "--out", out, *resume_flag(out)],
                    out / "summary.json")
            keep_joint(f"evo @ {label}", "evo", key, out, wanted("evo", row) and here, label, seed, row)

    save()
    print(_markdown(result))


def _earlier(path: Path, result: dict) -> dict:
    """The results file of an earlier run measured the same way (model, windows, tasks), else {}."""
    if not path.exists():
        return {}
    earlier = json.loads(path.read_text())
    same = all(earlier.get(k) == result[k] for k in ("spec", "quick", "test_text", "tasks"))
    if not same:
        print(f"pareto: {path} was measured differently (model, windows or tasks); its rows are not kept", flush=True)
    return earlier if same else {}


def _same_types(a: Path, b: Path) -> bool:
    """Two allocation files that give every tensor the same GGUF type (False when either is missing)."""
    if not (a.exists() and b.exists()):
        return False
    types = [{row["tensor"]: row["gguf_type"] for row in json.loads(p.read_text())["layers"]} for p in (a, b)]
    return types[0] == types[1]


def _table_seconds(cal: Path) -> float | None:
    """Wall seconds the measured sensitivity table took (summed over resumed runs), if it is there."""
    tables = sorted((cal / "sensitivity").glob("measured-*.json"), key=lambda t: t.stat().st_mtime)
    return json.loads(tables[-1].read_text()).get("seconds") if tables else None


def _budgets(work: Path, presets: list) -> dict:
    """Whole-file byte budgets: Q3_K_M and Q4_K_M exactly, plus points between uniform 3 bits and Q6_K."""
    size = {p: (work / f"preset-{p}.gguf").stat().st_size for p in presets}
    smallest = (work / "uniform-Q3_K.gguf").stat().st_size
    top = size.get("Q6_K", max(size.values()))
    low, q3, q4 = smallest, size.get("Q3_K_M"), size.get("Q4_K_M")
    budgets = {"small": int(low + 0.5 * ((q3 or top) - low))}
    if q3:
        budgets["Q3_K_M"] = q3
    if q3 and q4:
        budgets["mid"] = (q3 + q4) // 2
    if q4:
        budgets["Q4_K_M"] = q4
    budgets["large"] = ((q4 or low) + top) // 2
    return budgets


def _row(label, method, report, budget=None, seed=None) -> dict:
    kld, tasks, speed = report.get("kld", {}), report.get("tasks", {}), report.get("speed") or {}
    return {"label": label, "method": method, "budget": budget, "seed": seed, "size_bytes": report["size_bytes"],
            "bpw": report["bpw"], "ppl": report["perplexity"]["ppl"], "kld": kld.get("kld_mean", 0.0),
            "same_top": kld.get("same_top", 1.0),
            "tasks": {k: v["acc"] if k in ACC_TASKS else v["acc_norm"] for k, v in tasks.items()},
            "pp512": speed.get("pp512"), "tg128": speed.get("tg128")}


def _groups(rows: dict) -> list:
    """Rows with SAC seeds merged: mean and standard deviation of each number."""
    groups = {}
    for row in rows.values():
        groups.setdefault(row["label"], []).append(row)
    out = []
    for members in groups.values():
        merged = dict(members[0], seeds=len(members))
        for key in ("size_bytes", "ppl", "kld", "same_top", "bpw"):
            values = [m[key] for m in members]
            merged[key], merged[key + "_sd"] = statistics.fmean(values), (
                statistics.stdev(values) if len(values) > 1 else 0.0)
        merged["tasks"] = {k: statistics.fmean(m["tasks"].get(k, float("nan")) for m in members)
                           for k in members[0]["tasks"]}
        for key in ("pp512", "tg128"):  # the least contended of the seeds' runs
            merged[key] = max((m[key] for m in members if m.get(key)), default=None)
        out.append(merged)
    return sorted(out, key=lambda r: r["size_bytes"])


def _markdown(r: dict) -> str:
    groups = _groups(r["rows"])
    tasks = sorted({k for g in groups for k in g["tasks"]})
    lines = [f"# Pareto: `{r['model']}`" + (" (quick smoke run)" if r["quick"] else ""), "",
             (f"llama.cpp on {r['test_text']}; tasks {r['tasks']} (acc for BoolQ and WinoGrande, acc_norm for the "
              "others). The base is the source model run as is (an already-quantized GGUF, dequantized), not FP16. "
              "Search rows: mean ± sd over seeds. pp512/tg128 (tokens/s): one run per file (for search rows the best "
              "of the seeds' runs), taken whenever that file ran on a shared 2-core machine, so they do not "
              "compare across rows; `benchmarks/speed_vs_q4km.py` compares speeds in interleaved rounds."), "",
             "Budgets (whole-file bytes): " + ", ".join(f"{k} {v:,}" for k, v in r["budgets"].items()),
             *_claim_c1(groups), *_joint(r, groups), *_claim_c3(groups), "", "## Every row", "",
             "| method | seeds | MB | PPL | KLD | same top % | " + " | ".join(tasks) + " | pp512 | tg128 |",
             "|---|---:|---:|---:|---:|---:|" + "---:|" * len(tasks) + "---:|---:|"]
    for g in groups:
        cells = [g["label"], str(g["seeds"]), f"{g['size_bytes'] / 1e6:.2f}", _spread(g, "ppl", ".3f"),
                 _spread(g, "kld", ".4f"), f"{100 * g['same_top']:.1f}"]
        cells += [f"{100 * g['tasks'][t]:.1f}" if t in g["tasks"] else "" for t in tasks]
        cells += [f"{g['pp512']:.0f}" if g.get("pp512") else "", f"{g['tg128']:.1f}" if g.get("tg128") else ""]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _claim_c1(groups: list) -> list[str]:
    """Claim C1 lines: every method at Q4_K_M's exact size, and each mixed method's size at Q4_K_M's PPL."""
    q4 = next((g for g in groups if g["label"] == "llama.cpp Q4_K_M"), None)
    if q4 is None:
        return []
    at_q4 = [g for g in groups if g.get("budget") == "Q4_K_M" or g["label"] in (
        "llama.cpp Q4_K_M", "llama.cpp Q4_K_M imatrix", "HALO uniform Q4_K")]
    lines = ["", f"## At llama.cpp Q4_K_M's size ({q4['size_bytes'] / 1e6:.2f} MB)", "",
             "| method | seeds | MB | PPL | KLD | same top % |", "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {g['label']} | {g['seeds']} | {g['size_bytes'] / 1e6:.2f} | {_spread(g, 'ppl', '.3f')} | "
              f"{_spread(g, 'kld', '.4f')} | {100 * g['same_top']:.1f} |" for g in at_q4]
    lines += ["", f"Size at Q4_K_M's PPL ({q4['ppl']:.3f}), linear between a method's neighbouring budgets:"]
    for method in ("greedy", "sac", "sac-guided", "evo"):
        points = sorted((g["size_bytes"], g["ppl"]) for g in groups if g["method"] == method and g.get("budget"))
        lines.append(f"- {method}: {_size_at(points, q4['ppl'])}")
    return lines


def _joint(r: dict, groups: list) -> list[str]:
    """Joint-KL searches against the knapsack they start from, per budget: test KLD, its ratio, evaluations, wall."""
    by_label = {g["label"]: g for g in groups}
    table = r.get("table_seconds")
    lines = ["", "## Joint searches against the knapsack (same measured table)", "",
             "KLD: mean ± sd over seeds; x: that over the knapsack's KLD. Wall: the measured table "
             f"({'%.0f s' % table if table else 'time not recorded'}, measured once for every budget) plus the "
             "search's own seconds (mean over seeds).", "",
             "| budget | knapsack KLD | method | seeds | evaluations | KLD | x knapsack | wall s (table + search) |",
             "|---|---:|---|---:|---:|---:|---:|---:|"]
    found = False
    for budget in r["budgets"]:
        knapsack = by_label.get(f"greedy @ {budget}")
        for method, label in (("sac-guided", f"RAMP-SAC guided @ {budget}"), ("evo", f"evo @ {budget}")):
            g = by_label.get(label)
            if g is None:
                continue
            found = True
            seeds = [row for row in r["rows"].values() if row["label"] == label]
            search = [r["seconds"][k] for k in (f"search_{JOINT[method]}-{budget}-s{row['seed']}" for row in seeds)
                      if k in r["seconds"]]
            wall = (f"{table or 0:.0f} + {statistics.fmean(search):.0f}" if search else "")
            ratio = f"{g['kld'] / knapsack['kld']:.3f}" if knapsack and knapsack["kld"] > 0 else ""
            lines.append(f"| {budget} | {knapsack['kld']:.4f} | " if knapsack else f"| {budget} | | ")
            lines[-1] += (f"{method} | {g['seeds']} | {seeds[0].get('evaluations', '')} | {_spread(g, 'kld', '.4f')} | "
                          f"{ratio} | {wall} |")
    return lines if found else []


def _claim_c3(groups: list) -> list[str]:
    """Claim C3 lines: each folded file next to the same allocation without folding."""
    by_label = {g["label"]: g for g in groups}
    pairs = [(g["label"].replace(" + fold", ""), g) for g in groups if g["method"] == "fold"]
    pairs = [(by_label[plain], folded) for plain, folded in pairs if plain in by_label]
    if not pairs:
        return []
    lines = ["", "## Scale folding on/off (claim C3): same bits, same imatrix", "",
             "| allocation | MB | PPL | PPL folded | KLD | KLD folded |", "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {plain['label']} | {plain['size_bytes'] / 1e6:.2f} | {plain['ppl']:.3f} | {folded['ppl']:.3f} | "
              f"{plain['kld']:.4f} | {folded['kld']:.4f} |" for plain, folded in pairs]
    return lines


def _size_at(points: list, ppl: float) -> str:
    """Where a size-sorted (bytes, PPL) curve first reaches `ppl`, as text."""
    if not points:
        return "no rows yet"
    if points[0][1] <= ppl:
        return f"already at or below it at its smallest size, {points[0][0] / 1e6:.2f} MB"
    for (s0, p0), (s1, p1) in zip(points, points[1:]):
        if p1 <= ppl:
            return f"{(s0 + (p0 - ppl) / (p0 - p1) * (s1 - s0)) / 1e6:.2f} MB"
    return f"not reached up to {points[-1][0] / 1e6:.2f} MB (PPL {points[-1][1]:.3f} there)"


def _spread(group: dict, key: str, fmt: str) -> str:
    text = f"{group[key]:{fmt}}"
    return text + (f" ± {group[key + '_sd']:{fmt}}" if group["seeds"] > 1 else "")


def _plot(r: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # llama.cpp's presets with and without imatrix are told apart: imatrix moves them more than some methods differ
    styles = {"llama.cpp": ("s", "tab:gray", "tab:gray"), "llama.cpp + imatrix": ("s", "none", "tab:purple"),
              "uniform": ("^", "tab:blue", "tab:blue"), "greedy": ("D", "tab:orange", "tab:orange"),
              "sac": ("o", "none", "tab:red"), "sac-guided": ("o", "tab:red", "tab:red"),
              "evo": ("P", "tab:brown", "tab:brown"),
              "fold": ("v", "tab:green", "tab:green"),
              "base": ("*", "black", "black")}

    def series(group: dict) -> str:
        imatrix = group["method"] == "llama.cpp" and group["label"].endswith(" imatrix")
        return "llama.cpp + imatrix" if imatrix else group["method"]

    merged = _groups(r["rows"])
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, key, name in ((axes[0], "ppl", "WikiText-2 test PPL"), (axes[1], "kld", "KLD vs base")):
        for method, (marker, face, edge) in styles.items():
            groups = [g for g in merged if series(g) == method and (key != "kld" or method != "base")]
            if groups:
                ax.errorbar([g["size_bytes"] / 1e6 for g in groups], [g[key] for g in groups],
                            yerr=[g[key + "_sd"] for g in groups], fmt=marker, color=edge, markerfacecolor=face,
                            markeredgecolor=edge, label=method, capsize=3)
        ax.set_xlabel("file size (MB)")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    axes[1].set_yscale("log")
    axes[0].legend()
    fig.suptitle(f"{r['model']}: size vs quality, every file run in llama.cpp")
    save_png(fig, path)


if __name__ == "__main__":
    sys.exit(main())
