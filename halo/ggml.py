"""llama.cpp's own quantizer (libggml) bound through ctypes, and gguf-py's dequantizer.

`quantize` returns exactly the bytes `llama-quantize` writes for a tensor: it calls
`ggml_quantize_chunk` from the `libggml-base.so` that ships inside the installed llama-cpp-python
package, the same library llama.cpp links.  Rows are quantized independently, so large matrices
are split into row slabs that a few threads quantize at once (ctypes releases the GIL); the bytes
do not depend on the split.  `dequantize` uses gguf-py, an implementation independent of libggml.
"""

import ctypes
import importlib.util
import os
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path

import gguf
import numpy as np

from ramputils.errors import UserError

QType = gguf.GGMLQuantizationType

# Weights per extra thread: below this, thread start-up costs more than the cheap types take.
_MIN_SLAB_WEIGHTS = 1 << 20
_MAX_THREADS = 8


@lru_cache(maxsize=1)
def library() -> ctypes.CDLL:
    """Load libggml-base from llama-cpp-python's lib/ folder and declare the functions used here."""
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or spec.origin is None:
        raise UserError("llama-cpp-python is not installed (pip install llama-cpp-python)")
    path = Path(spec.origin).parent / "lib" / "libggml-base.so"
    if not path.exists():
        raise UserError(f"libggml-base.so not found in {path.parent}; reinstall llama-cpp-python")
    lib = ctypes.CDLL(str(path))
    # Signatures as declared in ggml/include/ggml.h (enum ggml_type is a C int).
    lib.ggml_quantize_chunk.argtypes = [
        ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p,
        ctypes.c_int64, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p,
    ]
    lib.ggml_quantize_chunk.restype = ctypes.c_size_t
    lib.ggml_row_size.argtypes = [ctypes.c_int, ctypes.c_int64]
    lib.ggml_row_size.restype = ctypes.c_size_t
    lib.ggml_blck_size.argtypes = [ctypes.c_int]
    lib.ggml_blck_size.restype = ctypes.c_int64
    lib.ggml_quantize_requires_imatrix.argtypes = [ctypes.c_int]
    lib.ggml_quantize_requires_imatrix.restype = ctypes.c_bool
    lib.ggml_quantize_init.argtypes = [ctypes.c_int]
    lib.ggml_quantize_init.restype = None
    lib.ggml_validate_row_data.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t]
    lib.ggml_validate_row_data.restype = ctypes.c_bool
    return lib


def block_size(qtype: QType) -> int:
    """Weights per quantization block (1 for F32/F16/BF16, 32 or 256 for the quantized types)."""
    return int(library().ggml_blck_size(int(qtype)))


def row_bytes(qtype: QType, cols: int) -> int:
    """Bytes of one row of `cols` weights in `qtype` (libggml's ggml_row_size)."""
    _check_cols(qtype, cols)
    return int(library().ggml_row_size(int(qtype), int(cols)))


def requires_imatrix(qtype: QType) -> bool:
    """Whether libggml refuses to quantize `qtype` without an importance matrix."""
    return bool(library().ggml_quantize_requires_imatrix(int(qtype)))


def validate(data: np.ndarray, qtype: QType) -> bool:
    """libggml's own sanity check of quantized bytes (finite scales etc.), as llama-quantize runs it."""
    buf = np.ascontiguousarray(data, dtype=np.uint8)
    return bool(library().ggml_validate_row_data(int(qtype), buf.ctypes.data, buf.nbytes))


def quantize(weights: np.ndarray, qtype: QType, imatrix: np.ndarray | None = None,
             threads: int | None = None) -> np.ndarray:
    """Quantize a (rows, cols) float32 matrix to `qtype`; returns uint8 (rows, row_bytes).

    `imatrix` is llama.cpp's importance per input column, shape (cols,): the mean of x**2 of that
    input channel over calibration tokens.  Types that do not use it ignore it, as in llama.cpp.
    """
    qtype = QType(qtype)
    src = _as_matrix(weights)
    rows, cols = src.shape
    _check_cols(qtype, cols)
    imat = _as_imatrix(imatrix, cols)
    if imat is None and requires_imatrix(qtype):
        raise UserError(f"{qtype.name} needs an importance matrix (imatrix)")
    lib = library()
    lib.ggml_quantize_init(int(qtype))  # build lookup tables once, before threads race for them
    nbytes = row_bytes(qtype, cols)
    dst = np.empty((rows, nbytes), dtype=np.uint8)
    imat_ptr = None if imat is None else imat.ctypes.data

    def run(first: int, count: int) -> int:
        return lib.ggml_quantize_chunk(int(qtype), src[first].ctypes.data, dst[first].ctypes.data,
                                       0, count, cols, imat_ptr)

    slabs = _slabs(rows, cols, threads)
    if len(slabs) == 1:
        written = [run(*slabs[0])]
    else:
        with ThreadPoolExecutor(max_workers=len(slabs)) as pool:
            written = list(pool.map(lambda slab: run(*slab), slabs))
    assert sum(written) == dst.nbytes, "libggml wrote an unexpected number of bytes"
    return dst


def dequantize(data: np.ndarray, qtype: QType, shape: tuple[int, int]) -> np.ndarray:
    """Decode `quantize`'s bytes back to float32 of `shape` with gguf-py (independent of libggml)."""
    qtype = QType(qtype)
    rows, cols = (int(n) for n in shape)
    raw = np.ascontiguousarray(data, dtype=np.uint8).reshape(rows, row_bytes(qtype, cols))
    return np.asarray(gguf.quants.dequantize(raw, qtype), dtype=np.float32).reshape(rows, cols)


def quantize_dequantize(weights: np.ndarray, qtype: QType, imatrix: np.ndarray | None = None) -> np.ndarray:
    """The weights as llama.cpp will see them after quantizing to `qtype` (float32, same shape)."""
    qtype = QType(qtype)
    src = _as_matrix(weights)
    return dequantize(quantize(src, qtype, imatrix), qtype, src.shape)


def _as_matrix(weights: np.ndarray) -> np.ndarray:
    """C-contiguous finite float32 (rows, cols), or a UserError."""
    arr = np.ascontiguousarray(weights, dtype=np.float32)
    if arr.ndim != 2 or arr.size == 0:
        raise UserError(f"weights must be a non-empty (rows, cols) matrix, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise UserError("weights contain NaN or infinite values")
    return arr


def _as_imatrix(imatrix: np.ndarray | None, cols: int) -> np.ndarray | None:
    """C-contiguous float32 (cols,) of finite non-negative importances, or a UserError."""
    if imatrix is None:
        return None
    imat = np.ascontiguousarray(imatrix, dtype=np.float32)
    if imat.shape != (cols,):
        raise UserError(f"imatrix must have shape ({cols},), got {imat.shape}")
    if not np.isfinite(imat).all() or (imat < 0).any():
        raise UserError("imatrix must be finite and non-negative")
    return imat


def _check_cols(qtype: QType, cols: int) -> None:
    """libggml aborts the process on a bad row length, so refuse it here first."""
    blck = block_size(qtype)
    if cols <= 0 or cols % blck:
        raise UserError(f"{qtype.name} needs a row length divisible by {blck}, got {cols}")


def _slabs(rows: int, cols: int, threads: int | None) -> list[tuple[int, int]]:
    """Split rows into (first_row, n_rows) slabs, one per worker thread."""
    if threads is None:
        threads = min(_MAX_THREADS, os.cpu_count() or 1, max(1, rows * cols // _MIN_SLAB_WEIGHTS))
    threads = max(1, min(int(threads), rows))
    bounds = np.linspace(0, rows, threads + 1).astype(int)
    return [(int(a), int(b - a)) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
