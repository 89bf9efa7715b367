"""Claim C6: DynaQuant's mixes vs uniform NF4 at similar memory, with and without the fine-tuning confound,
and vs RAMP at the same size in llama.cpp.

    python benchmarks/dynaquant.py [--model smollm2-135m] [--seeds 0] [--episodes 30] [--max-chunks 40]
                                   [--limit 100] [--all-formats] [--quick]

1. `ramp search --algo ppo --reward dynaquant` per seed (WikiText-2 validation text only).  Its mix is the policy's
   argmax rollout; the highest-return episode's mix, when different, gets torch rows too.
2. Torch rows, bitsandbytes formats simulated exactly, measured with HALO's protocol (WikiText-2 raw TEST,
   llama-perplexity's ctx-512 windows, first --max-chunks; BoolQ and PIQA, first --limit items):
   base (the source weights in float32: the "FP16-equivalent" base, itself dequantized from a quantized GGUF),
   uniform nf4 (fp16/int8/fp4 too with --all-formats), each DynaQuant mix applied to the base (no fine-tuning:
   the allocation alone),
   and "+ FT" rows: uniform NF4 and the mixes after the same short fine-tuning (STE AdamW, as many steps as one
   DynaQuant episode gives its quantized model) — the paper's baselines were fine-tuned, so this keeps its confound.
   Memory = bytes as bitsandbytes stores the linears (absmax included) + every other parameter in fp16.
3. llama.cpp rows: each mix exported (nf4/fp4 -> IQ4_NL, int8 -> Q8_0, fp16 -> F16), uniform IQ4_NL, and RAMP's
   greedy allocator (actions 3-6 bits, the Pareto run's sensitivities) at the mix's exact file size;
   `halo bench` (KLD vs the source GGUF, BoolQ, PIQA).
Everything resumes.  Results: benchmarks/results/dynaquant_<model>.{json,md}.
"""

import argparse
import json
import shutil
import sys
from pathlib import Path

from common import (  # the script's own folder is on sys.path
    BIN,
    ROOT,
    base_gguf,
    job,
    model_spec,
    resume_flag,
    write_json,
    write_text,
)

TASKS = ("boolq", "piqa")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--episodes", type=int, default=30)
    parser.add_argument("--max-chunks", type=int, default=40)
    parser.add_argument("--limit", type=int, default=100, help="first N items of BoolQ and of PIQA")
    parser.add_argument("--all-formats", action="store_true", help="also uniform fp16, int8 and fp4 torch rows")
    parser.add_argument("--quick", action="store_true", help="tiny settings for a smoke run")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "dynaquant")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    _, name, steps = job(args, "dynaquant")
    spec = model_spec(args.model)
    work = steps.work
    chunks, limit = (2, 2) if args.quick else (args.max_chunks, args.limit)
    small = ["--calib-samples", "8", "--calib-seq-len", "64", "--eval-samples", "2", "--eval-seq-len", "64",
             "--ft-steps", "1", "--ft-batch", "1"] if args.quick else [
        "--calib-samples", "64", "--calib-seq-len", "256", "--eval-samples", "2", "--eval-seq-len", "256"]
    episodes = 2 if args.quick else args.episodes
    args.out.mkdir(parents=True, exist_ok=True)

    mixes = {}
    for seed in [int(s) for s in args.seeds.split(",")]:
        out = work / f"search-s{seed}"
        steps.run(f"search-s{seed}", [BIN / "ramp", "search", "--model", spec, "--algo", "ppo", "--reward",
                                      "dynaquant", "--episodes", str(episodes), "--seed", str(seed), *small,
                                      "--out", out, *resume_flag(out)], out / "summary.json")
        summary = json.loads((out / "summary.json").read_text())
        mixes[f"DynaQuant s{seed}"] = summary["deterministic"]["formats"]
        best = summary["best_return"]["formats"]
        if best != mixes[f"DynaQuant s{seed}"] and not args.quick:  # the highest-return episode: torch rows only
            mixes[f"DynaQuant s{seed} best-return episode"] = best
    config = summary["dynaquant"]

    torch_rows = _torch_rows(spec, mixes, config, work, chunks, limit, int(args.seeds.split(",")[0]), args.quick,
                             args.all_formats)
    deterministic = {label: fmts for label, fmts in mixes.items() if "best-return" not in label}
    cpp_rows = _cpp_rows(steps, spec, deterministic, work, chunks, limit, args.quick)
    result = {"model": args.model, "quick": args.quick, "episodes": episodes, "mixes": mixes, "dynaquant": config,
              "torch_rows": torch_rows, "llama_cpp_rows": cpp_rows, "seconds": steps.seconds,
              "test_text": f"wikitext-2 raw test, ctx 512, first {chunks} windows", "tasks": f"first {limit} items"}
    write_json(args.out / f"{name}.json", result)
    write_text(args.out / f"{name}.md", _markdown(result))
    print(_markdown(result))


def _torch_rows(spec, mixes, config, work, chunks, limit, seed, quick, extra) -> list[dict]:
    """Each row measured once and cached as work/torch-<key>.json."""
    import torch

    from calibration.data import bos_id, calibration_windows, load_text, tokenize
    from calibration.layers import layer_table
    from calibration.models import load_model, load_tokenizer, resolve
    from ramp.dynaquant import formats as fmt_mod
    from ramp.dynaquant.env import step_groups
    from ramp.dynaquant.finetune import clear_formats, finetune, make_optimizer, set_format
    from ramp.dynaquant.loop import memory_bytes
    from ramp.dynaquant.torch_lm import bench_torch

    source = resolve(spec)
    model, tokenizer = load_model(source), load_tokenizer(source)
    pristine = {k: v.detach().clone() for k, v in model.state_dict().items()}
    layers = layer_table(model, source.gguf_arch)
    modules = dict(model.named_modules())
    # what one DynaQuant episode gives its quantized model
    ft_steps = len(step_groups(layers, config["granularity"])) * config["ft_steps"]
    tokens = tokenize(tokenizer, load_text("wikitext2").text)
    seq = 64 if quick else 256
    windows = calibration_windows(tokens, 8 if quick else 64, seq, seed, bos_id(tokenizer))
    other = sum(p.numel() for p in model.parameters()) - sum(layer.params for layer in layers)
    # the rows the verdict rests on first (each is cached as it finishes), the other uniform formats last
    plans = {"base (source weights, float32)": None, "uniform nf4": ["nf4"] * len(layers)}
    plans |= dict(mixes)
    plans |= {f"{k} + FT": v for k, v in {"uniform nf4": ["nf4"] * len(layers), **mixes}.items()}
    plans |= {f"uniform {f}": [f] * len(layers) for f in (fmt_mod.FORMATS if extra else []) if f != "nf4"}
    rows = []
    for label, fmts in plans.items():
        path = work / f"torch-{label.replace(' ', '_').replace('(', '').replace(')', '').replace(',', '')}.json"
        if not path.exists():
            clear_formats(model)
            model.load_state_dict(pristine)
            for layer, f in zip(layers, fmts or []):
                set_format(modules[layer.name], f)
            if label.endswith("+ FT"):
                generator = torch.Generator().manual_seed(seed)
                picks = torch.randint(len(windows), (ft_steps, config["ft_batch"]), generator=generator)
                finetune(model, make_optimizer(model, config["ft_lr"]), [windows[p] for p in picks])
            measured = bench_torch(model, tokenizer, chunks, TASKS, limit)
            layer_bytes = memory_bytes(layers, fmts or ["fp16"] * len(layers))
            row = {"label": label, "memory_bytes": layer_bytes + 2 * other, "layer_bytes": layer_bytes,
                   "fine_tuned_steps": ft_steps if label.endswith("+ FT") else 0, "formats": fmts,
                   "ppl": measured["perplexity"]["ppl"], "ppl_err": measured["perplexity"]["ppl_err"],
                   "tasks": {k: v["acc"] for k, v in measured["tasks"].items()}}
            write_json(path, row)
        rows.append(json.loads(path.read_text()))
    clear_formats(model)
    return rows


def _cpp_rows(steps, spec, mixes, work, chunks, limit, quick) -> list[dict]:
    bench_args = ("--tasks", ",".join(TASKS), "--limit", str(limit), "--no-speed")
    cal = work / "calibration"
    steps.run("calibrate", [BIN / "ramp", "calibrate", "--model", spec, "--out", cal,
                            *(["--samples", "8", "--seq-len", "128"] if quick else [])], cal / "manifest.json")
    base = base_gguf(spec, work)
    rows = []
    report = steps.export_and_bench("uniform-IQ4_NL", spec, ["--uniform", "IQ4_NL"], cal, base,
                                    work / "uniform-IQ4_NL.gguf", chunks, bench_args)
    rows.append(_cpp_row("uniform IQ4_NL (NF4's GGUF analogue)", report))
    for label, _ in mixes.items():
        seed = label.split()[-1]
        report = steps.export_and_bench(f"mix-{seed}", spec, ["--allocation", work / f"search-{seed}" /
                                                              "allocation.json"], cal, base, work / f"mix-{seed}.gguf",
                                        chunks, bench_args)
        rows.append(_cpp_row(f"{label} exported", report))
        out = work / f"greedy-{seed}"
        for table in (ROOT / "runs" / "pareto" / work.name / "calibration" / "sensitivity").glob("*.json"):
            # tables the Pareto run measured: each is keyed by its calibration and settings, so one made with
            # other settings is never read
            (cal / "sensitivity").mkdir(exist_ok=True)
            if not (cal / "sensitivity" / table.name).exists():
                shutil.copy(table, cal / "sensitivity" / table.name)
        steps.run(f"greedy-{seed}", [BIN / "ramp", "search", "--model", spec, "--algo", "knapsack", "--actions",
                                     "3,4,5,6", "--sensitivity", "measured", "--target-size", str(report["size_bytes"]),
                                     "--calibration", cal,
                                     *(["--eval-samples", "2", "--eval-seq-len", "64"] if quick else []),
                                     "--out", out], out / "summary.json")
        report = steps.export_and_bench(f"greedy-{seed}", spec, ["--allocation", out / "allocation.json"], cal, base,
                                        work / f"greedy-{seed}.gguf", chunks, bench_args)
        rows.append(_cpp_row(f"RAMP greedy at the size of {label}", report))
    return rows


def _cpp_row(label: str, report: dict) -> dict:
    return {"label": label, "size_bytes": report["size_bytes"], "bpw": report["bpw"],
            "ppl": report["perplexity"]["ppl"], "kld": report["kld"]["kld_mean"],
            "tasks": {k: v["acc"] for k, v in report["tasks"].items()}}


def _markdown(r: dict) -> str:
    lines = [f"# C6: DynaQuant on `{r['model']}`" + (" (quick smoke run)" if r["quick"] else ""), "",
             f"{r['episodes']} PPO episodes per seed; test text {r['test_text']}; BoolQ/PIQA {r['tasks']} (acc). "
             "The base is the source GGUF's weights dequantized to float32, not a true FP16 model.", "",
             "## Torch, bitsandbytes formats simulated (HF tokenizer)", "",
             "| row | memory MB | linears MB | FT steps | PPL | " + " | ".join(TASKS) + " |",
             "|---|---:|---:|---:|---:|" + "---:|" * len(TASKS)]
    for row in r["torch_rows"]:
        lines.append(f"| {row['label']} | {row['memory_bytes'] / 1e6:.2f} | {row['layer_bytes'] / 1e6:.2f} | "
                     f"{row['fine_tuned_steps']} | {row['ppl']:.3f} ± {row['ppl_err']:.3f} | "
                     + " | ".join(f"{100 * row['tasks'][t]:.1f}" for t in TASKS) + " |")
    lines += ["", "## llama.cpp (exported GGUF files)", "",
              "| row | MB | bpw | PPL | KLD | " + " | ".join(TASKS) + " |",
              "|---|---:|---:|---:|---:|" + "---:|" * len(TASKS)]
    for row in r["llama_cpp_rows"]:
        lines.append(f"| {row['label']} | {row['size_bytes'] / 1e6:.2f} | {row['bpw']:.3f} | {row['ppl']:.3f} | "
                     f"{row['kld']:.4f} | " + " | ".join(f"{100 * row['tasks'][t]:.1f}" for t in TASKS) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
