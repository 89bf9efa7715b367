"""`halo bench FILE`: size, perplexity, KL divergence against a base, task accuracy and speed of a GGUF
file in llama.cpp; prints a short table and optionally writes the full result as JSON."""

from pathlib import Path

from ramputils.atomic import write_json
from ramputils.cli_parser import positive_int
from ramputils.errors import UserError


def register(sub) -> None:
    from .measure.backend import parse
    from .measure.tasks import TASKS

    cmd = sub.add_parser("bench", help="measure a GGUF file in llama.cpp (PPL, KLD, tasks, speed)",
                         description=__doc__.replace("\n", " "))
    cmd.add_argument("file", type=Path, help="the .gguf file to measure")
    cmd.add_argument("--base", type=Path, default=None, help="base .gguf for KL divergence (same vocabulary)")
    cmd.add_argument("--base-cache", type=Path, default=None,
                     help="folder keeping the base's logits between runs, so measuring many files against one base "
                          "decodes the base once (float32, exact; ~50 MB a window for SmolLM2-135M, ~270 MB for "
                          "Gemma 3 270M)")
    cmd.add_argument("--tasks", default="", help=f"comma-separated, from {','.join(TASKS)} (default none)")
    cmd.add_argument("--max-chunks", type=positive_int, default=None,
                     help="windows of wiki.test.raw to score (default all, like llama-perplexity)")
    cmd.add_argument("--limit", type=positive_int, default=None, help="first N items of each task (default all)")
    cmd.add_argument("--threads", type=positive_int, default=None, help="llama.cpp threads (default: all cores)")
    cmd.add_argument("--gpu-layers", type=parse, default=None, metavar="N|all",
                     help="layers llama.cpp offloads to the GPU (default: all when the llama.cpp build has a GPU "
                          "backend, else 0)")
    cmd.add_argument("--ctx", type=positive_int, default=512, help="perplexity window (default 512)")
    cmd.add_argument("--no-speed", action="store_true", help="skip the pp512/tg128 speed test")
    cmd.add_argument("--json", type=Path, default=None, help="write the result here (atomically)")
    cmd.set_defaults(func=run)


def table(result: dict) -> str:
    """A few lines a person reads: size, PPL, KLD, accuracies, speed."""
    rows = [("file", result["file"]),
            ("size", f"{result['size_mb']:.2f} MB, {result['params'] / 1e6:.1f} M params, {result['bpw']:.3f} bpw")]
    ppl = result["perplexity"]
    rows.append(("PPL", f"{ppl['ppl']:.4f} ± {ppl['ppl_err']:.4f} ({ppl['chunks']} chunks of {ppl['n_ctx']})"))
    if "kld" in result:
        k = result["kld"]
        rows += [("PPL base", f"{k['ppl_base']:.4f} (Δ {k['ppl_delta']:+.4f} ± {k['ppl_delta_err']:.4f})"),
                 ("KLD", f"mean {k['kld_mean']:.6f} ± {k['kld_mean_err']:.6f}, median {k['kld_median']:.6f}, "
                         f"p99 {k['kld_p99']:.6f}"),
                 ("same top", f"{100 * k['same_top']:.2f} ± {100 * k['same_top_err']:.2f} %")]
    for name, t in result["tasks"].items():
        rows.append((name, f"acc {100 * t['acc']:.2f} %, acc_norm {100 * t['acc_norm']:.2f} % "
                           f"(per {t['norm']}, n={t['n']})"))
    if "speed" in result:
        s = result["speed"]
        rows.append(("speed", f"pp512 {s['pp512']:.1f} t/s, tg128 {s['tg128']:.1f} t/s ({s['threads']} threads)"))
    if "backend" in result:
        b = result["backend"]
        rows.append(("backend", f"{b['backend']}, {b['gpu_layers']} of {b['n_layer'] + 1} layers on the GPU "
                                f"({'; '.join(b['devices'])})"))
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def run(args) -> int:
    from .api import bench
    from .measure.tasks import check_tasks

    tasks = check_tasks(args.tasks.split(","))
    if args.json is not None and not args.json.parent.is_dir():
        raise UserError(f"cannot write {args.json}: folder {args.json.parent} does not exist")
    result = bench(args.file, base=args.base, tasks=tasks, max_chunks=args.max_chunks, limit=args.limit,
                   threads=args.threads, speed=not args.no_speed, n_ctx=args.ctx,
                   base_cache=args.base_cache, gpu_layers=args.gpu_layers).to_dict()
    print(table(result))
    if args.json is not None:
        write_json(args.json, result)
    return 0
