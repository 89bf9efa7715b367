"""Episodes per minute of `ramp search` in process and on N Ray workers, and how long the learner waits.

    python benchmarks/ray_workers.py [--model smollm2-135m] [--workers 1,2] [--episodes 30] [--quick]

Every run is the same SAC search (the paper's mode, `--sac-mode paper`: Ray workers run its episodes; one
calibration, seed 0, the default evaluator) for `--episodes` episodes, all past warm-up so the learner does its
gradient steps too: first in process (`--workers` unset, the baseline measured in the same run), then `ramp search
--workers N` for each N on a local Ray started with this machine's CPUs. From each run: episodes per minute over the
loop (Ray: `ray.json`; in process: the episode wall times in log.jsonl), the ratio to the in-process rate, and the
share of the loop the learner spent waiting for the next episode. Model replicas are built once per worker before
the loop and not counted (their time is in the step's total, reported too).
Results: benchmarks/results/ray_workers_<model>.{json,md}; runs under runs/ray_workers/.
"""

import argparse
import json
import os
import statistics
from pathlib import Path

from common import (  # the script's own folder is on sys.path
    BIN,
    ROOT,
    job,
    model_spec,
    write_json,
    write_text,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--episodes", type=int, default=30)
    parser.add_argument("--quick", action="store_true", help="tiny settings for a smoke run")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "ray_workers")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    _, name, steps = job(args, "ray_workers")
    spec = model_spec(args.model)
    episodes = 4 if args.quick else args.episodes
    small = ["--eval-samples", "2", "--eval-seq-len", "64", "--updates-per-episode", "4"] if args.quick else []
    cal = steps.work / "calibration"
    steps.run("calibrate", [BIN / "ramp", "calibrate", "--model", spec, "--out", cal,
                            *(["--samples", "8", "--seq-len", "128"] if args.quick else [])], cal / "manifest.json")
    rows = {}
    for n in [0] + [int(w) for w in args.workers.split(",")]:
        key = "in-process" if n == 0 else f"ray-{n}"
        out = steps.work / key
        steps.run(key, [BIN / "ramp", "search", "--model", spec, "--calibration", cal, "--episodes", str(episodes),
                        "--warmup-episodes", "0", "--sac-mode", "paper", *small, *(["--workers", str(n)] if n else []),
                        "--out", out],
                  out / "summary.json")
        rows[key] = _row(out, n, steps.seconds[key])
    for row in rows.values():
        row["speedup"] = row["episodes_per_minute"] / rows["in-process"]["episodes_per_minute"]
    result = {"model": args.model, "episodes": episodes, "quick": args.quick, "cpus": os.cpu_count(), "rows": rows}
    write_json(args.out / f"{name}.json", result)
    write_text(args.out / f"{name}.md", _markdown(result))
    print(_markdown(result))


def _row(out: Path, workers: int, total: float) -> dict:
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    if workers:
        ray = json.loads((out / "ray.json").read_text())
        rate, wait = ray["episodes_per_minute"], ray["learner_wait_share"]
    else:
        rate, wait = 60 * len(log) / sum(r["seconds"] for r in log), None
    return {"workers": workers, "episodes_per_minute": rate, "learner_wait_share": wait, "step_seconds": total,
            "eval_seconds_mean": statistics.fmean(r["eval_seconds"] for r in log),
            "update_seconds_mean": statistics.fmean(r["update_seconds"] for r in log)}


def _markdown(r: dict) -> str:
    lines = [f"# Episodes per minute, in process and on Ray workers ({r['model']}, {r['episodes']} episodes, "
             f"{r['cpus']} CPUs)", "",
             "| run | episodes / min | vs in process | learner waiting | evaluation s / episode | updates s / episode "
             "| whole step s |", "|---|---:|---:|---:|---:|---:|---:|"]
    for key, row in r["rows"].items():
        wait = "—" if row["learner_wait_share"] is None else f"{100 * row['learner_wait_share']:.0f} %"
        lines.append(f"| {key} | {row['episodes_per_minute']:.2f} | {row['speedup']:.2f}x | {wait} | "
                     f"{row['eval_seconds_mean']:.2f} | {row['update_seconds_mean']:.2f} | {row['step_seconds']:.0f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
