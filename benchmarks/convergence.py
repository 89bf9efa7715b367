"""Convergence and seed variance of search variants: the reward ablation (claim C5) and SAC vs PPO (claim C4).

    python benchmarks/convergence.py [--model smollm2-135m] [--variants sac:quality-first,sac:linear,sac:naive]
                                     [--seeds 0,1,2] [--episodes 200] [--budget 4.5] [--no-bench] [--quick]

Each variant `ALGO:REWARD[:BUDGET_MODE[:QUALITY]]` is a `ramp search --algo ALGO --reward REWARD --budget-mode MODE
--quality QUALITY` run per seed (SAC in the paper's mode, `--sac-mode paper`: the rewards are its settings), all on
one calibration, one evaluator (WikiText-2 validation windows) and one budget.  From each search's log.jsonl:
  * best-so-far validation PPL among episodes within budget over the base PPL on the same windows (each seed draws
    its own windows), against episodes (the curve, mean and band over seeds), and the episode return beside it;
  * episodes to convergence: the first episode after which the best-so-far stays within `--tolerance` of its final
    value (a seed that never finds an in-budget allocation counts as not converged);
  * final best in-budget PPL / base, its variance over seeds, the fraction of in-budget episodes, the mean return and
    bpw of the last episodes (what the policy learned) and the wall time.
With bench on (default) each seed's chosen allocation is also exported and run in llama.cpp on WikiText-2 raw TEST
(ctx 512, --max-chunks windows): the test PPL and KLD the table reports next to the validation numbers.
Results: benchmarks/results/convergence_<model>[_quick][_<label>].{json,md,png}; searches and files under
runs/convergence/<model>/ (shared by every label: a search of the same variant and seed is run once).
"""

import argparse
import json
import math
import statistics
import sys
import warnings
from pathlib import Path

from common import (  # the script's own folder is on sys.path
    BIN,
    ROOT,
    base_gguf,
    job,
    model_spec,
    resume_flag,
    save_png,
    write_json,
    write_text,
)

LATE = 50
"""The last LATE episodes of a search show what its policy has learned: their mean return and bpw are reported."""
WINDOW, SETTLE = 10, 0.5
"""A search's return has settled at the first episode where the mean of the last WINDOW returns is within SETTLE of
the last-LATE mean: how many episodes the agent needs to learn the reward, defined even with no in-budget episode."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--variants", default="sac:quality-first,sac:linear,sac:naive",
                        help="ALGO:REWARD[:BUDGET_MODE[:QUALITY]],... (budget mode reward (default) or repair; "
                             "quality ppl (default) or kld)")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--budget", type=float, default=4.5, help="real bits per weight of the quantizable layers")
    parser.add_argument("--tolerance", type=float, default=0.01, help="relative distance to the final best PPL")
    parser.add_argument("--max-chunks", type=int, default=40)
    parser.add_argument("--no-bench", action="store_true", help="skip the llama.cpp test-set run of each result")
    parser.add_argument("--label", default=None,
                        help="results go to convergence_<model>_<label>.* (e.g. c4), so runs of other variants on "
                             "the same model keep their own files")
    parser.add_argument("--quick", action="store_true", help="tiny settings for a smoke run")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "convergence")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    _, name, steps = job(args, "convergence")
    name += f"_{args.label}" if args.label else ""
    spec = model_spec(args.model)
    variants = [(v.split(":") + ["reward", "ppl"][len(v.split(":")) - 2:])[:4] for v in args.variants.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    episodes = 4 if args.quick else args.episodes
    search_args = ["--episodes", str(episodes), *(
        ["--eval-samples", "2", "--eval-seq-len", "64"] if args.quick else [])]
    # SAC's own options: `ramp search` refuses them for --algo ppo, greedy or uniform
    sac_quick = ["--warmup-episodes", "2", "--updates-per-episode", "2"] if args.quick else []
    cal = steps.work / "calibration"
    steps.run("calibrate", [BIN / "ramp", "calibrate", "--model", spec, "--out", cal,
                            *(["--samples", "8", "--seq-len", "128"] if args.quick else [])], cal / "manifest.json")
    base = base_gguf(spec, steps.work)

    runs = {}
    for algo, reward, mode, quality in variants:
        suffix = ("" if mode == "reward" else f"-{mode}") + ("" if quality == "ppl" else f"-{quality}")
        for seed in seeds:
            key = f"{algo}-{reward}{suffix}{'' if args.episodes == 200 else f'-e{args.episodes}'}-s{seed}"
            out = steps.work / key
            steps.run(f"search_{key}", [BIN / "ramp", "search", "--model", spec, "--algo", algo, "--reward", reward,
                                        "--budget-mode", mode, "--quality", quality, "--budget", str(args.budget),
                                        "--calibration", cal,
                                        "--seed", str(seed),
                                        *search_args, *(sac_quick + ["--sac-mode", "paper"] if algo == "sac" else []),
                                        "--out", out, *resume_flag(out)], out / "summary.json")
            variant = f"{algo}:{reward}" + suffix.replace("-", ":")
            run = _curve(out, args.tolerance) | {"variant": variant, "seed": seed,
                                                 "seconds": steps.seconds[f"search_{key}"]}
            if not args.no_bench:
                report = steps.export_and_bench(key, spec, ["--allocation", out / "allocation.json"], cal, base,
                                                steps.work / f"{key}.gguf", 2 if args.quick else args.max_chunks)
                run |= {"test_ppl": report["kld"]["ppl"], "test_kld": report["kld"]["kld_mean"],
                        "size_bytes": report["size_bytes"]}
            runs[key] = run

    result = {"model": args.model, "budget_bpw": args.budget, "episodes": episodes, "tolerance": args.tolerance,
              "quick": args.quick, "runs": runs, "variants": _summaries(runs),
              "test_text": None if args.no_bench else f"wikitext-2 raw test, ctx 512, first "
                                                       f"{2 if args.quick else args.max_chunks} windows"}
    write_json(args.out / f"{name}.json", result)
    write_text(args.out / f"{name}.md", _markdown(result))
    _plot(result, args.out / f"{name}.png")
    print(_markdown(result))


def _curve(out: Path, tolerance: float) -> dict:
    """Best-so-far in-budget validation PPL per episode, as a ratio to the base model's PPL on the same windows (each
    seed draws its own validation windows, so only the ratio compares across seeds), and the episode it settles."""
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines() if line.strip()]
    base = json.loads((out / "summary.json").read_text())["base"]["ppl"]
    best, curve = math.inf, []
    for row in log:
        if row["feasible"]:
            best = min(best, row["ppl"])
        curve.append(best / base)
    final, late = curve[-1], min(LATE, len(log))
    returns, window = [r["reward"] for r in log], min(WINDOW, len(log))
    late_return = statistics.fmean(returns[-late:])
    settled = next((end for end in range(window, len(log) + 1)
                    if statistics.fmean(returns[end - window:end]) >= late_return - SETTLE), None)
    converged = None
    if math.isfinite(final):
        converged = next(i + 1 for i, value in enumerate(curve) if value <= final * (1 + tolerance))
    return {"curve": [v if math.isfinite(v) else None for v in curve], "base_ppl": base,
            "final_ppl": best if math.isfinite(best) else None,
            "final_ratio": final if math.isfinite(final) else None,
            "final_kld": min((r["kld"] for r in log if r["feasible"]), default=None),
            "converged_episode": converged, "feasible_fraction": sum(r["feasible"] for r in log) / len(log),
            "mean_bpw": statistics.fmean(r["bpw"] for r in log), "returns": returns,
            "late_return": late_return, "settled_episode": settled,
            "late_bpw": statistics.fmean(r["bpw"] for r in log[-late:])}


def _summaries(runs: dict) -> dict:
    out = {}
    for variant in dict.fromkeys(r["variant"] for r in runs.values()):
        members = [r for r in runs.values() if r["variant"] == variant]
        finals = [r["final_ratio"] for r in members if r["final_ratio"] is not None]
        conv = [r["converged_episode"] for r in members if r["converged_episode"] is not None]
        out[variant] = {
            "seeds": len(members), "seeds_in_budget": len(finals),
            "final_ratio_mean": statistics.fmean(finals) if finals else None,
            "final_ratio_var": statistics.variance(finals) if len(finals) > 1 else None,
            "final_kld_mean": statistics.fmean(r["final_kld"] for r in members if r["final_kld"] is not None)
            if finals else None,
            "converged_mean": statistics.fmean(conv) if len(conv) == len(members) else None,
            "converged": conv,
            "feasible_fraction": statistics.fmean(r["feasible_fraction"] for r in members),
            "late_return": statistics.fmean(r["late_return"] for r in members),
            "settled": [r["settled_episode"] for r in members],
            "late_bpw": statistics.fmean(r["late_bpw"] for r in members),
            "seconds_mean": statistics.fmean(r["seconds"] for r in members)}
        if all("test_ppl" in r for r in members):
            tests = [r["test_ppl"] for r in members]
            out[variant] |= {"test_ppl_mean": statistics.fmean(tests),
                             "test_ppl_sd": statistics.stdev(tests) if len(tests) > 1 else 0.0,
                             "test_kld_mean": statistics.fmean(r["test_kld"] for r in members)}
    return out


def _fmt(value, spec: str) -> str:
    return "—" if value is None else f"{value:{spec}}"


def _markdown(r: dict) -> str:
    lines = [f"# Convergence: `{r['model']}`" + (" (quick smoke run)" if r["quick"] else ""), "",
             f"Budget {r['budget_bpw']} real bpw of the quantizable layers, {r['episodes']} episodes per search. "
             "Validation PPL = the search's evaluator (WikiText-2 validation windows, drawn per seed, so given as a "
             "ratio to the base model's PPL on the same windows); converged = first episode "
             f"whose best in-budget PPL is within {100 * r['tolerance']:.0f} % of the search's final best "
             "(— if a seed never found an in-budget allocation); variance over seeds of that ratio; "
             f"return and bpw = means over each search's last {LATE} episodes (what the policy has learned); return "
             f"settled = first episode whose last {WINDOW} returns average within {SETTLE} of that return."
             + (f" Test = the chosen file in llama.cpp, {r['test_text']}." if r["test_text"] else ""), "",
             ("| variant | seeds in budget | converged (episode) | final val PPL / base | variance | best val KLD | "
             "in-budget episodes | return | return settled (episode) | bpw | test PPL | test KLD | minutes/search |"),
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for variant, s in r["variants"].items():
        test = (f"{s['test_ppl_mean']:.3f} ± {s['test_ppl_sd']:.3f}" if "test_ppl_mean" in s else "—")
        lines.append(f"| {variant} | {s['seeds_in_budget']}/{s['seeds']} | {_fmt(s['converged_mean'], '.0f')} "
                     f"({', '.join(map(str, s['converged']))}) | {_fmt(s['final_ratio_mean'], '.4f')} | "
                     f"{_fmt(s['final_ratio_var'], '.2e')} | {_fmt(s['final_kld_mean'], '.4f')} | "
                     f"{100 * s['feasible_fraction']:.0f} % | {_fmt(s.get('late_return'), '.2f')} | "
                     f"{', '.join(map(str, s.get('settled', [])))} | "
                     f"{_fmt(s.get('late_bpw'), '.2f')} | {test} | "
                     f"{_fmt(s.get('test_kld_mean'), '.4f')} | {s['seconds_mean'] / 60:.1f} |")
    return "\n".join(lines) + "\n"


def _plot(r: dict, path: Path) -> None:
    """Left: best in-budget validation PPL so far; right: episode return, moving mean of 10 (mean, min..max band over
    seeds) — defined even for a search that never meets the budget."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    def band(ax, rows: list, label: str, color=None):
        curves = np.array([[np.nan if v is None else v for v in row] for row in rows], dtype=float)
        x = np.arange(1, curves.shape[1] + 1)
        with warnings.catch_warnings():  # an episode before any seed was in budget is all-NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            mean, low, high = np.nanmean(curves, 0), np.nanmin(curves, 0), np.nanmax(curves, 0)
        line, = ax.plot(x, mean, label=label, color=color)
        ax.fill_between(x, low, high, color=line.get_color(), alpha=0.2)
        return line.get_color()

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    window = 10
    for variant in r["variants"]:
        runs = [run for run in r["runs"].values() if run["variant"] == variant]
        color = band(left, [run["curve"] for run in runs], f"{variant} ({len(runs)} seeds)")
        if all("returns" in run for run in runs):
            smooth = [np.convolve(run["returns"], np.ones(window) / window, mode="valid") for run in runs]
            band(right, [np.concatenate([np.full(window - 1, np.nan), m]) for m in smooth], variant, color)
    left.set_ylabel("best in-budget validation PPL so far / base PPL")
    right.set_ylabel(f"episode return (moving mean of {window})")
    for ax in (left, right):
        ax.set_xlabel("episode")
        ax.grid(alpha=0.3)
    left.legend()
    fig.suptitle(f"{r['model']} at {r['budget_bpw']} bpw: line = mean, band = min..max over seeds")
    save_png(fig, path)


if __name__ == "__main__":
    sys.exit(main())
