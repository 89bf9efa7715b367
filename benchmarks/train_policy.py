"""Train a policy to ship in policies/: a SAC search on one model, its export measured in llama.cpp, the card filled.

    python benchmarks/train_policy.py --model smollm2-135m [--episodes 200] [--seed 0] [--budget 4.5]
                                      [--target-size BYTES] [--search-dir DIR] [--quick]

The search is `ramp search --algo sac` as it is by default (guided SAC on the Fisher table since issue 31).
Stages (resumable, each skipped when done): calibrate -> `ramp search` (SAC) -> `halo export` of its
allocation -> `halo bench` (WikiText-2 raw test, ctx 512, --max-chunks windows, KLD vs base) ->
policies/<name>.safetensors + .json, the card extended with the training run and the measured numbers.
`--search-dir` takes a finished search instead of running one (e.g. the one benchmarks/search_pipeline.py made).
"""

import argparse
import json
import shutil
from pathlib import Path

from common import (  # the script's own folder is on sys.path
    BIN,
    ROOT,
    Steps,
    base_gguf,
    model_spec,
    resume_flag,
    write_json,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m", help="smollm2-135m, gemma3-270m or a path")
    parser.add_argument("--name", default=None, help="policy name (default: the model's short name)")
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--budget", type=float, default=4.5)
    parser.add_argument("--target-size", type=int, default=None, help="whole-file byte budget instead of --budget")
    parser.add_argument("--max-chunks", type=int, default=40)
    parser.add_argument("--search-dir", type=Path, default=None, help="a finished `ramp search` output to ship")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "policies")
    parser.add_argument("--policies", type=Path, default=ROOT / "policies", help="where the policy is written")
    args = parser.parse_args()
    name = args.name or Path(args.model).stem
    spec = model_spec(args.model)
    steps = Steps(args.work / name)
    cal, search = steps.work / "calibration", steps.work / "search"
    if args.search_dir:
        if not (search / "summary.json").exists():
            shutil.copytree(args.search_dir, search, dirs_exist_ok=True)
        cal = Path(json.loads((search / "config.json").read_text())["calibration"] or cal)
    quick = ["--episodes", "3", "--warmup-episodes", "2", "--updates-per-episode", "2", "--eval-samples", "2",
             "--eval-seq-len", "64"] if args.quick else ["--episodes", str(args.episodes)]
    steps.run("calibrate", [BIN / "ramp", "calibrate", "--model", spec, "--out", cal,
                            *(["--samples", "8", "--seq-len", "128"] if args.quick else [])], cal / "manifest.json")
    if not args.search_dir:  # a killed search continues from its checkpoint
        budget = ["--target-size", str(args.target_size)] if args.target_size else ["--budget", str(args.budget)]
        steps.run("search", [BIN / "ramp", "search", "--model", spec, "--calibration", cal, *budget,
                             "--seed", str(args.seed), *quick, "--out", search, *resume_flag(search)],
                  search / "summary.json")
    report = steps.export_and_bench("ramp", spec, ["--allocation", search / "allocation.json"], cal,
                                    base_gguf(spec, steps.work), steps.work / f"{name}.gguf",
                                    2 if args.quick else args.max_chunks)
    summary = json.loads((search / "summary.json").read_text())
    chosen = summary["allocations"][summary["chosen"]]
    # the policy's own rollout: "deterministic" in the paper's mode, "policy" in guided SAC (which also has "knapsack")
    own = summary["allocations"].get("deterministic") or summary["allocations"]["policy"]
    card = json.loads((search / "policy.json").read_text())
    card |= {"name": name, "training_model": args.model, "measured": {
        "chosen": summary["chosen"], "search_ppl_validation": chosen["ppl"], "search_bpw": chosen["bpw"],
        "search_kld_validation": chosen.get("kld"),
        "deterministic_ppl_validation": own["ppl"], "deterministic_bpw": own["bpw"],
        "deterministic_kld_validation": own.get("kld"),
        **({"knapsack_kld_validation": summary["allocations"]["knapsack"]["kld"]}
           if "knapsack" in summary["allocations"] else {}),
        "note": "file_bytes and the *_test numbers are of the search's answer (summary.json's `chosen`); the "
                "policy's own deterministic rollout on the training model is deterministic_*",
        "base_ppl_validation": summary["base"]["ppl"], "file_bytes": report["size_bytes"],
        "ppl_test": report["kld"]["ppl"], "base_ppl_test": report["kld"]["ppl_base"],
        "kld_test": report["kld"]["kld_mean"], "same_top_test": report["kld"]["same_top"],
        "test_text": f"wikitext-2 raw test, ctx 512, first {report['kld']['chunks']} windows"}}
    args.policies.mkdir(parents=True, exist_ok=True)
    weights = args.policies / f"{name}.safetensors"
    shutil.copyfile(search / "policy.safetensors", weights.with_suffix(".safetensors.tmp"))
    weights.with_suffix(".safetensors.tmp").replace(weights)
    write_json(args.policies / f"{name}.json", card)
    print(f"shipped {weights} ({weights.stat().st_size / 1e6:.2f} MB): test PPL {report['kld']['ppl']:.3f} "
          f"(base {report['kld']['ppl_base']:.3f}), KLD {report['kld']['kld_mean']:.4f}, "
          f"{report['size_bytes']:,} bytes")


if __name__ == "__main__":
    main()
