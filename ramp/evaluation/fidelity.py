"""Fidelity of the evaluator: its perplexity of an allocation against llama.cpp's on the exported GGUF.

`fidelity` exports the allocation with `halo.exporter.export` (same imatrix and folding options as the
evaluator), loads the file in llama.cpp and scores the SAME token windows the same way: each window
evaluated alone from an empty cache, NLL of positions 1..T-1.  The KV cache is F32 (llama.cpp's
default F16 cache alone moves the logits), so the comparison isolates the weights.  By default the
token embeddings / output head are written F32, i.e. as the base model the evaluator uses; with
`base_specials=False` they follow the export's Q4_K_M rule and the gap includes their quantization.
What remains is llama.cpp's own arithmetic, e.g. its 8-bit quantization of activations in quantized
matrix products.
"""

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from halo.llama_build import check as check_llama_build
from ramputils.errors import UserError


@dataclass(frozen=True)
class FidelityResult:
    ppl_llama: float        # llama.cpp on the exported file
    ppl_evaluator: float    # the evaluator on the same windows
    kld_evaluator: float
    path: Path
    seconds: float

    @property
    def gap(self) -> float:
        """Relative PPL gap (llama.cpp - evaluator) / evaluator."""
        return (self.ppl_llama - self.ppl_evaluator) / self.ppl_evaluator


def llama_cpp_perplexity(path: Path, windows, threads: int | None = None) -> float:
    """llama.cpp's perplexity of `windows` (N, T): each window alone, NLL of positions 1..T-1."""
    import llama_cpp

    check_llama_build()
    windows = np.asarray(windows, dtype=np.int64)
    n_ctx = windows.shape[1]
    threads = threads or os.cpu_count()
    try:
        llm = llama_cpp.Llama(str(path), n_ctx=n_ctx, n_batch=n_ctx, n_ubatch=n_ctx, logits_all=True,
                              n_threads=threads, n_threads_batch=threads, verbose=False,
                              type_k=llama_cpp.GGML_TYPE_F32, type_v=llama_cpp.GGML_TYPE_F32)
    except (ValueError, RuntimeError) as exc:
        raise UserError(f"llama.cpp cannot load {path}: {exc}") from None
    nll = 0.0
    try:
        for window in windows:
            llm.reset()
            llm.eval(window.tolist())
            logits = np.asarray(llm.scores[: n_ctx - 1], dtype=np.float64)
            logits -= logits.max(axis=1, keepdims=True)
            logprobs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
            nll -= logprobs[np.arange(n_ctx - 1), window[1:]].sum()
    finally:
        llm.close()
    return float(np.exp(nll / (windows.shape[0] * (n_ctx - 1))))


def fidelity(evaluator, allocation, model_spec: str, out: Path, calibration=None, imatrix: bool = True,
             scale_fold: bool = False, base_specials: bool = True) -> FidelityResult:
    """Export `allocation` to `out` and compare llama.cpp's PPL with the evaluator's on its windows.

    `imatrix`, `scale_fold` and `calibration` must be what the evaluator was built with
    (`make_evaluator`); the export loads its own fresh copy of `model_spec`.
    """
    from halo.exporter import ExportOptions, export

    start = time.perf_counter()
    options = ExportOptions(scale_fold=scale_fold, imatrix=imatrix, verify=False,
                            token_embd_type="F32" if base_specials else None,
                            output_type="F32" if base_specials else None)
    calibration_dir = calibration.path if calibration is not None else None
    report = export(model_spec, allocation, Path(out), calibration_dir, options)
    ours = evaluator.evaluate_allocation(allocation)
    theirs = llama_cpp_perplexity(report.path, evaluator.windows.cpu())
    return FidelityResult(theirs, ours.ppl, ours.kld, report.path, time.perf_counter() - start)
