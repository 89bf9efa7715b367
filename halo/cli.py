"""The `halo` command: exact GGUF export of a bit allocation, llama-quantize recipes, llama.cpp benchmarks.

Each subcommand lives in its own module exposing `register(subparsers)` (adds its parser and sets
`func`), so this file only lists them.
"""

import importlib
import sys

from ramputils.cli_parser import OneLineParser
from ramputils.errors import run_cli

# module names under halo/, e.g. "halo.export_cli"; each has register(sub)
SUBCOMMANDS = ["halo.export_cli", "halo.bench_cli"]


def build_parser() -> OneLineParser:
    parser = OneLineParser(prog="halo", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in SUBCOMMANDS:
        importlib.import_module(name).register(sub)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


def entry() -> None:
    sys.exit(run_cli(main))
