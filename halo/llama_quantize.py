"""Stock llama.cpp quantization (`llama_model_quantize`, the engine of `llama-quantize`) from Python.

Used for llama.cpp's own presets (the baselines), as the oracle for HALO's bytes, and to check that
a `halo recipe` rebuilds the same mix.  Options mirror llama-quantize's flags: `pure`,
`--tensor-type` patterns (regex_search on tensor names, first match wins), `--token-embedding-type`,
`--output-tensor-type`, `--allow-requantize` and an importance matrix.
"""

import ctypes
import os
import tempfile
from pathlib import Path

import numpy as np

from ramputils.errors import UserError

PRESETS = ("Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_K_S", "Q4_K_M", "Q5_K_S", "Q5_K_M", "Q6_K", "Q8_0",
           "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "IQ4_NL", "IQ4_XS", "F16", "ALL_F32")


def ftype(preset: str) -> int:
    """llama.cpp's LLAMA_FTYPE_* value of a preset name (Q4_K_M, Q8_0, F16, ...)."""
    import llama_cpp

    key = preset.upper()
    value = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{key}", getattr(llama_cpp, f"LLAMA_FTYPE_{key}", None))
    if value is None or key not in PRESETS:
        raise UserError(f"unknown llama.cpp preset {preset!r}; known: {', '.join(PRESETS)}")
    return value


def quantize_file(src: Path, dst: Path, preset: str = "Q4_K_M", *, pure: bool = False,
                  overrides: list[tuple[str, int]] = (), token_embedding_type: int | None = None,
                  output_tensor_type: int | None = None, imatrix: dict[str, np.ndarray] | None = None,
                  allow_requantize: bool = False, threads: int | None = None) -> Path:
    """Quantize the GGUF `src` into `dst` with llama.cpp; written to a temporary name, then renamed.

    `overrides` are (regex pattern, GGML type id) pairs like llama-quantize's --tensor-type;
    `imatrix` maps tensor names to per-input-channel mean x^2 (what llama-imatrix stores).
    """
    import llama_cpp

    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise UserError(f"GGUF file not found: {src}")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype(preset)
    params.pure = pure
    params.allow_requantize = allow_requantize
    params.nthread = threads or os.cpu_count() or 1
    if token_embedding_type is not None:
        params.token_embedding_type = int(token_embedding_type)
    if output_tensor_type is not None:
        params.output_tensor_type = int(output_tensor_type)
    keep = []  # ctypes buffers must outlive the call
    if overrides:
        table = (llama_cpp.llama_model_tensor_override * (len(overrides) + 1))()
        for i, (pattern, qtype) in enumerate(overrides):
            table[i].pattern, table[i].type = pattern.encode(), int(qtype)
        table[len(overrides)].pattern = None
        params.tt_overrides = ctypes.cast(table, ctypes.POINTER(llama_cpp.llama_model_tensor_override))
        keep.append(table)
    if imatrix:
        table = (llama_cpp.llama_model_imatrix_data * (len(imatrix) + 1))()
        for i, (name, values) in enumerate(imatrix.items()):
            values = np.ascontiguousarray(values, dtype=np.float32)
            keep.append(values)
            table[i].name = name.encode()
            table[i].data = values.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
            table[i].size = values.size
        table[len(imatrix)].name = None
        params.imatrix = ctypes.cast(table, ctypes.POINTER(llama_cpp.llama_model_imatrix_data))
        keep.append(table)
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".gguf", dir=dst.parent)
    os.close(fd)
    try:
        status = llama_cpp.llama_model_quantize(str(src).encode(), tmp.encode(), ctypes.byref(params))
        if status != 0:
            raise UserError(f"llama.cpp could not quantize {src} to {preset} (status {status})")
        os.replace(tmp, dst)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return dst
