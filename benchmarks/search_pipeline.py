"""The RAMP search on one model: pipeline wall time, episode cost, evaluator fidelity, SAC vs greedy vs uniform.

    python benchmarks/search_pipeline.py [--model default] [--episodes 200] [--quick]

Stages, each run through the real CLI and timed, each skipped when its output exists (resume):
  1. `ramp calibrate` (128 x 512 tokens of WikiText-2 validation, first 80 %)
  2. `ramp search --algo sac` at the default budget (4.5 real bpw), default settings (guided SAC on the Fisher table)
  3. `halo export` of its allocation, 4. `halo bench` in llama.cpp (WikiText-2 raw TEST, ctx 512,
     --max-chunks windows, KLD against the base)      -> wall time of 1-4 = the pipeline
  5. the same for `ramp search --algo greedy` and for uniform Q4_K / Q3_K files (`halo export --uniform`)
  6. in-process, per evaluator dtype (`--dtypes`): one plain forward pass over the evaluation windows vs one
     evaluation (median of 3 each), and the fidelity gap (evaluator PPL vs llama.cpp PPL of the exported file on
     the same windows).
The search only sees validation text; every PPL/KLD in the comparison table is llama.cpp on test text.
Results: benchmarks/results/search_pipeline.{json,md} (`_quick` suffix for --quick).
"""

import argparse
import json
import statistics
import time
from pathlib import Path

from common import (  # the script's own folder is on sys.path
    BIN,
    ROOT,
    Steps,
    base_gguf,
    write_json,
    write_text,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--max-chunks", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dtypes", default="",
                        help="evaluator precisions whose speed and fidelity are measured (default float32, and "
                             "bfloat16 too when torch sees a CUDA GPU)")
    parser.add_argument("--quick", action="store_true", help="a few episodes on small settings (smoke run)")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "search_pipeline")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    small = ["--eval-samples", "2", "--eval-seq-len", "64"] if args.quick else []
    calib = ["--samples", "8", "--seq-len", "128"] if args.quick else ["--samples", "128", "--seq-len", "512"]
    episodes = ["--episodes", "4", "--warmup-episodes", "2", "--updates-per-episode", "4"] if args.quick else [
        "--episodes", str(args.episodes)]
    chunks = 2 if args.quick else args.max_chunks
    work = args.work.with_name(args.work.name + "_quick") if args.quick else args.work
    args.out.mkdir(parents=True, exist_ok=True)
    name = "search_pipeline" + ("_quick" if args.quick else "")
    steps = Steps(work)

    cal = work / "calibration"
    base = base_gguf(args.model, work)
    steps.run("calibrate", [BIN / "ramp", "calibrate", "--model", args.model, *calib, "--out", cal],
              cal / "manifest.json")
    rows = {}
    for algo in ("sac", "greedy"):
        out = work / algo
        steps.run(f"search_{algo}", [BIN / "ramp", "search", "--model", args.model, "--algo", algo,
                                     "--calibration", cal, "--seed", str(args.seed), "--out", out, *small,
                                     *(episodes if algo == "sac" else ["--sensitivity", "measured"])],
                  out / "summary.json")
        rows[algo] = steps.export_and_bench(algo, args.model, ["--allocation", out / "allocation.json"], cal, base,
                                            work / f"{algo}.gguf", chunks)
    for qtype in ("Q4_K", "Q3_K"):
        rows[f"uniform {qtype}"] = steps.export_and_bench(f"uniform_{qtype}", args.model, ["--uniform", qtype], cal,
                                                          base, work / f"uniform-{qtype}.gguf", chunks)
    seconds, state = steps.seconds, steps.state
    result = {"model": args.model, "quick": args.quick, "seed": args.seed, "seconds": seconds,
              "pipeline_seconds": sum(seconds[k] for k in ("calibrate", "search_sac", "export_sac", "bench_sac")),
              "episodes": _episode_stats(work / "sac" / "log.jsonl"),
              "search": {algo: json.loads((work / algo / "summary.json").read_text())["allocations"]
                         for algo in ("sac", "greedy")},
              "rows": rows, "test_text": f"wikitext-2 raw test, ctx 512, first {chunks} windows"}
    if "evaluator" not in state:
        state["evaluator"] = _evaluator_costs(args.model, cal, work / "sac" / "allocation.json", work, args.quick,
                                              _dtypes(args.dtypes))
        steps.save()
    result["evaluator"] = state["evaluator"]
    result["evaluator"]["episode_over_forward"] = result["episodes"]["mean_seconds"] / state["evaluator"]["forward_s"]
    write_json(args.out / f"{name}.json", result)
    write_text(args.out / f"{name}.md", _markdown(result))
    print(_markdown(result))


def _episode_stats(log: Path) -> dict:
    records = [json.loads(line) for line in log.read_text().splitlines()]
    total, evals = sum(r["seconds"] for r in records), sum(r["eval_seconds"] for r in records)
    updates = sum(r.get("update_seconds", 0.0) for r in records)
    learning = [r for r in records if not r["warmup"]]
    return {"count": len(records), "mean_seconds": total / len(records),
            "episodes_per_minute": 60 * len(records) / total,
            "eval_share": evals / total, "update_share": updates / total,
            "mean_seconds_learning": statistics.fmean(r["seconds"] for r in learning) if learning else None,
            "best_val_ppl_by_episode": _running_best(records)}


def _running_best(records) -> list:
    best, out = None, []
    for r in records:
        if r["feasible"] and (best is None or r["ppl"] < best):
            best = r["ppl"]
        out.append(best)
    return out


def _dtypes(text: str) -> list[str]:
    import torch

    from ramp.config.search import EVAL_DTYPES

    dtypes = [d for d in text.split(",") if d] or (["float32", "bfloat16"] if torch.cuda.is_available() else
                                                     ["float32"])
    if unknown := [d for d in dtypes if d not in EVAL_DTYPES]:
        raise SystemExit(f"search_pipeline: unknown --dtypes {', '.join(unknown)} (use {', '.join(EVAL_DTYPES)})")
    return dtypes


def _evaluator_costs(model_spec, cal_dir, allocation_path, work, quick, dtypes) -> dict:
    """Per evaluator dtype: plain forward vs evaluation on the search's default windows (median of 3) and the
    fidelity gap; the first dtype's numbers at the top level, every dtype's under "dtypes"."""
    costs = {dtype: _dtype_costs(model_spec, cal_dir, allocation_path, work, quick, dtype) for dtype in dtypes}
    return costs[dtypes[0]] | {"dtype": dtypes[0], "dtypes": costs}


def _dtype_costs(model_spec, cal_dir, allocation_path, work, quick, dtype) -> dict:
    import torch

    from calibration import artifact
    from calibration.models import load_model, resolve
    from halo import allocation as alloc_mod
    from ramp.config.search import EvalWindows
    from ramp.evaluation.evaluator import make_evaluator
    from ramp.evaluation.fidelity import fidelity

    source, cal = resolve(model_spec), artifact.read(cal_dir)
    model = load_model(source)
    evaluator = make_evaluator(model, source, cal, ["3", "4", "5", "6"], EvalWindows(2, 64) if quick else None,
                               dtype=dtype)
    alloc = alloc_mod.load(allocation_path, evaluator.layers)

    def forward():
        start = time.perf_counter()
        with torch.no_grad():
            for batch in torch.split(evaluator.windows, evaluator.batch_size):
                model(input_ids=batch, use_cache=False)
        return time.perf_counter() - start

    forward()  # warm-up
    forward_s = statistics.median(forward() for _ in range(3))
    evaluate_s = statistics.median(evaluator.evaluate_allocation(alloc).seconds for _ in range(3))
    fid = fidelity(evaluator, alloc, model_spec, work / "fidelity.gguf", cal)
    return {"device": str(evaluator.device), "windows": list(evaluator.windows.shape), "forward_s": forward_s,
            "evaluate_s": evaluate_s,
            "evaluate_over_forward": evaluate_s / forward_s, "fidelity": {
                "ppl_evaluator": fid.ppl_evaluator, "ppl_llama_cpp": fid.ppl_llama, "gap": fid.gap}}


def _markdown(r: dict) -> str:
    s, ep, ev = r["seconds"], r["episodes"], r["evaluator"]
    lines = [f"# RAMP search pipeline on `{r['model']}`" + (" (quick smoke run)" if r["quick"] else ""), "",
             "| stage | seconds |", "|---|---:|"]
    lines += [f"| {k} | {v:.0f} |" for k, v in s.items()]
    lines += [(f"| **pipeline (calibrate + SAC search + export + llama.cpp bench)** | **{r['pipeline_seconds']:.0f}** "
               f"({r['pipeline_seconds'] / 60:.1f} min) |"), "",
              (f"SAC: {ep['count']} episodes, {ep['episodes_per_minute']:.1f} episodes/min, {ep['mean_seconds']:.2f} s "
              f"each; evaluator (forward passes + scoring) {100 * ep['eval_share']:.0f} % of episode time, SAC updates "
              f"{100 * ep['update_share']:.0f} %."),
              (f"Evaluator on {ev['windows'][0]} x {ev['windows'][1]} tokens: plain forward {ev['forward_s']:.2f} s, "
              f"evaluation {ev['evaluate_s']:.2f} s ({ev['evaluate_over_forward']:.2f}x), whole episode "
              f"{ev['episode_over_forward']:.2f}x. Fidelity: evaluator PPL {ev['fidelity']['ppl_evaluator']:.3f} vs "
              f"llama.cpp {ev['fidelity']['ppl_llama_cpp']:.3f} on the same windows "
              f"(gap {100 * ev['fidelity']['gap']:+.2f} %)."), "",
              "| evaluator dtype | device | forward s | evaluation s | evaluator PPL | llama.cpp PPL | gap |",
              "|---|---|---:|---:|---:|---:|---:|",
              *(f"| {dtype} | {d.get('device', 'cpu')} | {d['forward_s']:.2f} | {d['evaluate_s']:.2f} | "
                f"{d['fidelity']['ppl_evaluator']:.3f} | {d['fidelity']['ppl_llama_cpp']:.3f} | "
                f"{100 * d['fidelity']['gap']:+.2f} % |" for dtype, d in ev.get("dtypes", {}).items()), "",
              f"llama.cpp on {r['test_text']}:", "",
              "| method | file MB | bpw (file) | PPL | KLD | same top % |", "|---|---:|---:|---:|---:|---:|"]
    for label, row in r["rows"].items():
        kld = row["kld"]
        lines.append(f"| {label} | {row['size_bytes'] / 1e6:.2f} | {row['bpw']:.3f} | {kld['ppl']:.3f} | "
                     f"{kld['kld_mean']:.4f} | {100 * kld['same_top']:.1f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
