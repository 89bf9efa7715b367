"""`halo export`, `halo recipe`, `halo base`, `halo preset`: files for llama.cpp from an allocation."""

import json
import sys
from pathlib import Path

from ramputils.errors import UserError


def register(sub) -> None:
    exp = sub.add_parser("export", help="write a bit allocation as a mixed-precision GGUF for llama.cpp")
    exp.add_argument("--model", default="default", help="`default`, a .gguf file or a Hugging Face directory")
    what = exp.add_mutually_exclusive_group(required=True)
    what.add_argument("--allocation", type=Path, help="allocation JSON (from `ramp search` or by hand)")
    what.add_argument("--uniform", metavar="TYPE", help="every quantizable layer this type or bit width")
    exp.add_argument("--calibration", type=Path, default=None,
                     help="calibration artifact of this model (imatrix weighting; needed for --scale-fold)")
    exp.add_argument("--scale-fold", action="store_true", help="apply RAMP scale folding before quantizing")
    exp.add_argument("--no-imatrix", action="store_true", help="quantize without importance weighting")
    exp.add_argument("--token-embd-type", default=None, help="type of token_embd (default: llama.cpp's Q4_K_M rule)")
    exp.add_argument("--output-type", default=None, help="type of the output head (default: Q6_K, Q8_0 on odd rows)")
    exp.add_argument("--out", type=Path, required=True, help="the .gguf file to write")
    exp.set_defaults(func=run_export)

    rec = sub.add_parser("recipe", help="print a --tensor-type-file for stock llama-quantize")
    rec.add_argument("source", type=Path, help="an allocation JSON with its model (--model), or an exported .gguf")
    rec.add_argument("--model", default=None, help="the model the allocation is for (adds embedding/head lines)")
    rec.set_defaults(func=run_recipe)

    base = sub.add_parser("base", help="write the unquantized base model as an F32/F16 GGUF")
    base.add_argument("--model", default="default")
    base.add_argument("--dtype", default="F32", choices=["F32", "F16"])
    base.add_argument("--out", type=Path, required=True)
    base.set_defaults(func=run_base)

    pre = sub.add_parser("preset", help="llama.cpp's own preset (Q4_K_M, ...) from HALO's F32 base GGUF")
    pre.add_argument("--model", default="default")
    pre.add_argument("--preset", required=True, help="Q3_K_S/M/L, Q4_K_S/M, Q5_K_S/M, Q6_K, Q8_0, ...")
    pre.add_argument("--calibration", type=Path, default=None, help="use this artifact's imatrix")
    pre.add_argument("--base", type=Path, default=None, help="an F32 base GGUF already written by `halo base`")
    pre.add_argument("--out", type=Path, required=True)
    pre.set_defaults(func=run_preset)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_export(args) -> int:
    from .api import export

    report = export(args.model, args.allocation or args.uniform, args.out, calibration=args.calibration,
                    scale_fold=args.scale_fold, imatrix=not args.no_imatrix, token_embd_type=args.token_embd_type,
                    output_type=args.output_type)
    for note in report.notes:
        _say(f"note: {note}")
    _say(f"wrote {report.path}: {report.file_bytes / 1e6:.2f} MB, {report.file_bpw:.3f} bpw file, "
         f"{report.layers_bpw:.3f} bpw quantizable layers; loaded and ran in llama.cpp")
    print(json.dumps(report.to_dict()))
    return 0


def run_recipe(args) -> int:
    from .recipe import recipe_text, usage

    types = tensor_types_of(args.source, args.model)
    sys.stdout.write(recipe_text(types))
    _say(usage("recipe.txt"))
    return 0


def tensor_types_of(source: Path, model_spec: str | None) -> dict:
    """Quantized tensor types named by an exported GGUF, or by an allocation (+ its model's specials)."""
    from . import allocation, qtypes

    if not source.is_file():
        raise UserError(f"file not found: {source}")
    if source.suffix == ".gguf":
        from gguf import GGUFReader

        try:
            reader = GGUFReader(source)
        except Exception as exc:
            raise UserError(f"{source} is not a readable GGUF file ({exc.__class__.__name__})") from None
        return {t.name: t.tensor_type for t in reader.tensors
                if len(t.shape) >= 2 and t.tensor_type not in (qtypes.QType.F32,)}
    if model_spec is None:
        data = _read_json(source)
        rows = data.get("layers", [])
        if not rows or not all("tensor" in r and ("gguf_type" in r) for r in rows):
            raise UserError(f"{source}: give --model so the allocation's types can be resolved")
        types = {r["tensor"]: qtypes.parse_type(r["gguf_type"]) for r in rows}
        types |= {k: qtypes.parse_type(v) for k, v in data.get("special_types", {}).items()}
        return types
    from calibration.layers import layer_table, special_tensors
    from calibration.models import load_model, resolve

    from .specials import special_types

    src = resolve(model_spec)
    model = load_model(src)
    resolved = allocation.load(source, layer_table(model, src.gguf_arch))
    return resolved.types() | special_types(special_tensors(model, src.gguf_arch))


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"cannot read {path} as JSON ({exc})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} is not an allocation")
    return data


def run_base(args) -> int:
    from calibration.models import load_model, resolve

    from .writer import write_base_gguf

    source = resolve(args.model)
    path = write_base_gguf(load_model(source), source, args.out, args.dtype)
    _say(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB, {args.dtype}; the base model's weights)")
    return 0


def run_preset(args) -> int:
    from .presets import make_preset

    path = make_preset(args.model, args.preset, args.out, calibration_dir=args.calibration, base=args.base)
    _say(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB, llama.cpp {args.preset.upper()})")
    return 0
