"""Zero-shot transfer against direct search (claim C2): every shipped policy applied to every model.

    python benchmarks/transfer.py [--policies smollm2-135m,gemma3-270m] [--targets smollm2-135m,gemma3-270m]
                                  [--budget 4.5] [--max-chunks 40] [--quick]

For each target and each policy, `ramp transfer` rolls the policy out on the target's own calibration
(deterministic actions, repaired down to the budget if it overshoots) and the allocation is exported and run in
llama.cpp (WikiText-2 raw TEST, ctx 512, --max-chunks windows, KLD vs the base).  The policy trained on the target
itself is the in-domain control (same rollout procedure, no transfer); the direct search is the target's own
200-episode SAC search (its best in-budget allocation), as recorded in the target's policy card, measured the same way.
Results: benchmarks/results/transfer.{json,md}; files under runs/transfer/.
"""

import argparse
import json
import sys
from pathlib import Path

from common import (  # the script's own folder is on sys.path
    BIN,
    ROOT,
    Steps,
    base_gguf,
    model_spec,
    write_json,
    write_text,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policies", default="smollm2-135m,gemma3-270m", help="shipped names or .safetensors paths")
    parser.add_argument("--targets", default="smollm2-135m,gemma3-270m")
    parser.add_argument("--budget", type=float, default=4.5, help="real bpw of the quantizable layers")
    parser.add_argument("--max-chunks", type=int, default=40)
    parser.add_argument("--quick", action="store_true", help="tiny settings for a smoke run")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "transfer")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    name = "transfer" + ("_quick" if args.quick else "")
    chunks = 2 if args.quick else args.max_chunks
    eval_args = ["--eval-samples", "2", "--eval-seq-len", "64"] if args.quick else []
    rows = []
    for target in args.targets.split(","):
        tag = Path(target).stem
        spec = model_spec(target)
        steps = Steps(args.work / (tag + ("_quick" if args.quick else "")))
        cal = ROOT / "runs" / "policies" / tag / "calibration"  # train_policy.py's, when this machine has it
        if args.quick or not (cal / "manifest.json").exists():
            cal = steps.work / "calibration"
            steps.run("calibrate", [BIN / "ramp", "calibrate", "--model", spec, "--out", cal,
                                    *(["--samples", "8", "--seq-len", "128"] if args.quick else [])],
                      cal / "manifest.json")
        base = base_gguf(spec, steps.work)
        card = _card(tag)
        if card and not args.quick:
            m = card["measured"]
            rows.append({"target": tag, "method": "direct search", "policy": tag, "episodes": card.get("episodes"),
                         "bpw": m["search_bpw"], "size_bytes": m["file_bytes"], "val_ppl": m["search_ppl_validation"],
                         "ppl": m["ppl_test"], "base_ppl": m["base_ppl_test"], "kld": m["kld_test"],
                         "same_top": m["same_top_test"], "repaired_layers": 0})
        for policy in args.policies.split(","):
            key = f"from-{Path(policy).stem}"
            out = steps.work / key
            steps.run(f"transfer_{key}", [BIN / "ramp", "transfer", "--policy", policy, "--target", spec,
                                          "--budget", str(args.budget), "--calibration", cal, *eval_args,
                                          "--out", out], out / "transfer.json")
            report = steps.export_and_bench(key, spec, ["--allocation", out / "allocation.json"], cal, base,
                                            steps.work / f"{key}.gguf", chunks)
            summary = json.loads((out / "transfer.json").read_text())
            rows.append({"target": tag, "method": "own policy" if Path(policy).stem == tag else "transfer",
                         "policy": Path(policy).stem, "bpw": summary["bpw"], "policy_bpw": summary["policy_bpw"],
                         "repaired_layers": summary["repaired_layers"], "size_bytes": report["size_bytes"],
                         "val_ppl": summary.get("ppl"), "ppl": report["kld"]["ppl"],
                         "base_ppl": report["kld"]["ppl_base"], "kld": report["kld"]["kld_mean"],
                         "same_top": report["kld"]["same_top"]})
    result = {"budget_bpw": args.budget, "quick": args.quick, "rows": rows,
              "test_text": f"wikitext-2 raw test, ctx 512, first {chunks} windows"}
    write_json(args.out / f"{name}.json", result)
    write_text(args.out / f"{name}.md", _markdown(result))
    print(_markdown(result))


def _card(name: str) -> dict | None:
    path = ROOT / "policies" / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _markdown(r: dict) -> str:
    lines = ["# Zero-shot transfer vs direct search" + (" (quick smoke run)" if r["quick"] else ""), "",
             (f"Budget {r['budget_bpw']} real bpw of the quantizable layers. Test = llama.cpp, {r['test_text']}, KLD "
             "vs the base (the source GGUF run as is, not FP16). Validation PPL = the search evaluator's windows. "
             "`own policy` and `transfer` are one deterministic rollout each (repaired to the budget when it "
             "overshoots); `direct search` is the target's best in-budget allocation of its SAC search."), "",
             ("| target | method | policy | bpw | policy's own bpw | repaired layers | MB | val PPL | test PPL "
              "| base PPL | KLD | same top % |"), "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in r["rows"]:
        own = f"{row['policy_bpw']:.3f}" if "policy_bpw" in row else "—"
        val = f"{row['val_ppl']:.3f}" if row.get("val_ppl") else "—"
        lines.append(f"| {row['target']} | {row['method']} | {row['policy']} | {row['bpw']:.3f} | {own} | "
                     f"{row['repaired_layers']} | {row['size_bytes'] / 1e6:.2f} | {val} | {row['ppl']:.3f} | "
                     f"{row['base_ppl']:.3f} | {row['kld']:.4f} | {100 * row['same_top']:.1f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
