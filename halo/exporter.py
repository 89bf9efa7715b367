"""Export: a bit allocation in, a mixed-precision GGUF that stock llama.cpp runs out.

Each quantizable layer is quantized by libggml in transformers' layout (rows = output features),
exactly as the search's evaluator does, and its rows of bytes are then put in llama.cpp's order (the
q/k rope permutation moves whole rows, and every type quantizes rows independently, so this equals
quantizing the permuted matrix).  Embeddings and head follow `halo.specials`, norms stay F32.  The
file is re-read with gguf-py and loaded and run in llama.cpp before success is reported.
"""

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from calibration import artifact
from calibration.layers import layer_table, special_tensors
from calibration.models import load_model, resolve
from ramputils import __version__
from ramputils.errors import UserError

from . import allocation as alloc_mod
from . import ggml, qtypes
from .fold import fold_model
from .gguf_meta import source_metadata
from .imatrix import layer_imatrix
from .layout import gguf_tensors, rows_to_gguf_order
from .llama_build import check as check_llama_build
from .specials import special_types
from .writer import write_gguf

QType = qtypes.QType


@dataclass
class ExportOptions:
    """How to export (besides the allocation)."""

    scale_fold: bool = False          # apply RAMP scale folding first (needs a calibration)
    imatrix: bool = True              # importance-weighted quantization when a calibration is given
    token_embd_type: str | None = None  # override the Q4_K_M rule for token embeddings
    output_type: str | None = None      # override the Q4_K_M rule for the output head
    verify: bool = True               # load and run the file in llama.cpp before reporting success


@dataclass
class ExportReport:
    path: Path
    file_bytes: int
    layer_bytes: int
    layer_params: int
    total_params: int
    types: dict[str, str]
    seconds: float
    notes: list[str] = field(default_factory=list)

    @property
    def layers_bpw(self) -> float:
        return self.layer_bytes * 8 / self.layer_params

    @property
    def file_bpw(self) -> float:
        return self.file_bytes * 8 / self.total_params

    def to_dict(self) -> dict:
        return {"path": str(self.path), "file_bytes": self.file_bytes, "file_mb": round(self.file_bytes / 1e6, 2),
                "file_bpw": round(self.file_bpw, 4), "layers_bpw": round(self.layers_bpw, 4),
                "layer_bytes": self.layer_bytes, "seconds": round(self.seconds, 2), "notes": self.notes}


def quantize_layer(weight: np.ndarray, qtype: QType, imatrix: np.ndarray | None) -> np.ndarray:
    """libggml's bytes for one layer in transformers' layout; float types stay float arrays."""
    if qtype in (QType.F32, QType.F16, QType.BF16):
        return ggml.quantize(weight, qtype) if qtype == QType.BF16 else weight
    return ggml.quantize(np.ascontiguousarray(weight, dtype=np.float32), qtype, imatrix)


def _metadata_extra(allocation, options, specials, calibration, provenance) -> dict:
    return {
        "halo.version": __version__,
        "halo.allocation": json.dumps([{"tensor": c.tensor, "bits": c.bits, "type": c.requested.name,
                                        "gguf_type": c.actual.name} for c in allocation.choices]),
        "halo.bpw": float(round(allocation.bpw, 4)),
        "halo.budget": json.dumps(allocation.meta.get("budget", {})),
        "halo.scale_folding": bool(options.scale_fold),
        "halo.imatrix": bool(options.imatrix and calibration is not None),
        "halo.special_types": json.dumps({k: v.name for k, v in specials.items()}),
        "halo.provenance": json.dumps(provenance),
    }


def metadata_extra_bound(layer_names: list[str], special_names: list[str]) -> dict:
    """HALO's own keys (`_metadata_extra`) at their largest for these tensors — every type name the longest one,
    room for long paths in the budget and provenance — for size budgets set before the allocation exists."""
    longest = max((t.name for t in qtypes.NOMINAL_BITS), key=len)
    rows = [{"tensor": name, "bits": 16, "type": longest, "gguf_type": longest} for name in layer_names]
    filler = "x" * 1024
    return {"halo.version": __version__, "halo.allocation": json.dumps(rows), "halo.bpw": 0.0,
            "halo.budget": json.dumps({"target": 1 / 3, "ceiling": 1 / 3, "nominal": False, "note": filler}),
            "halo.scale_folding": False, "halo.imatrix": False,
            "halo.special_types": json.dumps({name: longest for name in special_names}),
            "halo.provenance": json.dumps({"model": filler, "model_arch": filler, "calibration": filler,
                                           "method": filler, "policy": filler, "seed": 2 ** 63, "search": filler})}


def export(model_spec: str, allocation, out: Path, calibration_dir: Path | None = None,
           options: ExportOptions | None = None, model=None) -> ExportReport:
    """Write `allocation` (an `Allocation`, a path to one, or a type name for a uniform file) as GGUF."""
    options = options or ExportOptions()
    started = time.time()
    out = Path(out)
    if out.exists() and out.is_dir():
        raise UserError(f"output {out} is a directory; give a .gguf file name")
    if not out.parent.is_dir():
        raise UserError(f"output directory {out.parent} does not exist")
    uniform_pick = None
    if not isinstance(allocation, alloc_mod.Allocation) and Path(str(allocation)).suffix != ".json":
        uniform_pick = allocation
        qtypes.requested_type(uniform_pick)  # a bad type fails before the model is loaded
    elif isinstance(allocation, (str, Path)) and not Path(allocation).is_file():
        raise UserError(f"allocation file not found: {allocation}")
    source = resolve(model_spec)
    calibration = artifact.read(calibration_dir) if calibration_dir else None
    if options.scale_fold and calibration is None:
        raise UserError("--scale-fold needs the model's calibration (--calibration DIR)")
    model = model if model is not None else load_model(source)
    layers = layer_table(model, source.gguf_arch)
    if calibration is not None:
        calibration.check_layers(layers)
    if isinstance(allocation, alloc_mod.Allocation):
        resolved = allocation
    elif uniform_pick is not None:
        resolved = alloc_mod.uniform(layers, uniform_pick)
    else:
        resolved = alloc_mod.load(Path(allocation), layers)
    if [c.tensor for c in resolved.choices] != [layer.gguf_name for layer in layers]:
        raise UserError("the allocation does not match the model's layers")
    scales = fold_model(model, calibration) if options.scale_fold else None
    specials = special_types(special_tensors(model, source.gguf_arch), options.token_embd_type, options.output_type)

    by_tensor = {layer.gguf_name: layer for layer in layers}
    choice_of = {c.tensor: c for c in resolved.choices}
    modules = dict(model.named_modules())
    tensors, types, notes = [], {}, []
    float_tensors = gguf_tensors(model, source)
    for name, array in float_tensors.items():
        if name in by_tensor:
            layer, qtype = by_tensor[name], choice_of[name].actual
            weight = modules[layer.name].weight.detach().to("cpu").float().numpy()
            imatrix = layer_imatrix(calibration, layer, scales) if (options.imatrix and calibration) else None
            data = quantize_layer(weight, qtype, imatrix)
            data = rows_to_gguf_order(name, data, source.gguf_arch, model.config)
        elif name in specials:
            qtype = specials[name]
            data = quantize_layer(array, qtype, None)
        else:
            qtype, data = QType.F32, array
        tensors.append((name, data, qtype, array.shape))
        types[name] = qtype.name
    if resolved.choices and any(c.actual != c.requested for c in resolved.choices):
        n = sum(c.actual != c.requested for c in resolved.choices)
        notes.append(f"{n} of {len(resolved.choices)} layers use llama.cpp's row-size fallback type")
    provenance = {"model": str(source.path), "model_arch": source.architecture,
                  "calibration": str(calibration.path) if calibration else None} | {
                      k: v for k, v in resolved.meta.items() if k in ("method", "policy", "seed", "search")}
    metadata = source_metadata(source, _metadata_extra(resolved, options, specials, calibration, provenance))
    write_gguf(out, metadata, tensors, progress=sys.stderr.isatty())
    if options.verify:
        verify_in_llama_cpp(out)
    total_params = sum(int(np.prod(a.shape)) for a in float_tensors.values())
    return ExportReport(out, out.stat().st_size, resolved.bytes, resolved.params, total_params, types,
                        time.time() - started, notes)


def verify_in_llama_cpp(path: Path, n_tokens: int = 8) -> None:
    """Load the file in llama.cpp and run a few tokens; the logits must be finite."""
    import llama_cpp

    check_llama_build()
    try:
        llm = llama_cpp.Llama(str(path), n_ctx=64, n_batch=64, verbose=False, logits_all=True)
    except Exception as exc:  # llama-cpp-python raises ValueError on load failure
        path.unlink(missing_ok=True)
        raise UserError(f"llama.cpp cannot load the exported file ({exc}); removed {path}") from None
    try:
        tokens = llm.tokenize(b"The quick brown fox jumps over the lazy dog")[:n_tokens]
        llm.eval(tokens)
        logits = np.asarray(llm.scores[: len(tokens)])
        if not np.isfinite(logits).all():
            path.unlink(missing_ok=True)
            raise UserError(f"llama.cpp produced non-finite logits for {path}; removed it")
    finally:
        llm.close()
