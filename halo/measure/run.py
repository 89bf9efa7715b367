"""`bench`: every measurement of one GGUF file in one dict (the Python API behind `halo bench`).

Size and bits per weight come from gguf-py (file bytes * 8 / parameters counted from the tensor
shapes, so metadata and the tokenizer are included in the bits); perplexity, KL divergence against
`base`, task accuracy and speed from llama.cpp.  With a base, perplexity is taken from the KL
divergence pass (the same windows), so the text is decoded once per file.
"""

import os
import time
from pathlib import Path

from ramputils.errors import UserError

from . import read_gguf
from .backend import describe, gpu_layers as resolve_gpu_layers
from .kld import kl_divergence
from .perplexity import perplexity
from .speed import speed as measure_speed
from .tasks import check_tasks, run_tasks

PPL_KEYS = ("ppl", "ppl_err", "chunks", "tokens", "n_ctx", "seconds")


def file_stats(path) -> dict:
    """Size (bytes, MB = 10^6 bytes), parameter count and bits per weight of a GGUF file."""
    reader = read_gguf(path)
    size = Path(path).stat().st_size
    params = int(sum(int(t.n_elements) for t in reader.tensors))
    if params == 0:
        raise UserError(f"{path} holds no tensors")
    return {"size_bytes": size, "size_mb": size / 1e6, "params": params, "bpw": size * 8 / params}


def block_count(path) -> int:
    """The file's number of transformer blocks (`<arch>.block_count`)."""
    fields = read_gguf(path).fields
    arch = fields["general.architecture"].contents()
    return int(fields[f"{arch}.block_count"].contents())


def _check_count(name: str, value):
    if value is not None and int(value) < 1:
        raise UserError(f"{name} must be at least 1, got {value}")


def bench(path, base=None, tasks=(), max_chunks: int | None = None, limit: int | None = None,
          threads: int | None = None, speed: bool = True, n_ctx: int = 512, text_file=None,
          progress: bool = True, base_cache=None, gpu_layers: int | str | None = None) -> dict:
    """Measure GGUF `path`: size, perplexity (and KLD against `base`), accuracy on `tasks`, speed.

    max_chunks: windows of wiki.test.raw (None: all, like llama-perplexity); limit: first N items of
    each task; threads: llama.cpp threads (default os.cpu_count()); base_cache: a folder that keeps the
    base's logits between runs (see `base_logits.py`); gpu_layers: a count, "all" or None (all when llama.cpp
    has a GPU backend, else 0; see `backend.py`), recorded with the devices under "backend".
    """
    start = time.perf_counter()
    tasks = check_tasks(tasks)
    for name, value in (("max_chunks", max_chunks), ("limit", limit), ("threads", threads), ("n_ctx", n_ctx)):
        _check_count(name, value)
    threads = threads or os.cpu_count()
    if base_cache is not None and base is None:
        raise UserError("a base cache needs a base file (--base) to compare against")
    n_gpu = resolve_gpu_layers(gpu_layers)
    result = {"file": str(path), **file_stats(path), "threads": threads}
    result["backend"] = describe(n_gpu, block_count(path))
    if base is not None:
        read_gguf(base)
        result["base"] = str(base)
        result["kld"] = kl_divergence(path, base, text_file, n_ctx, max_chunks, threads, progress, base_cache,
                                      n_gpu)
        result["perplexity"] = {key: result["kld"][key] for key in PPL_KEYS}
    else:
        result["perplexity"] = perplexity(path, text_file, n_ctx, max_chunks, threads, progress, n_gpu)
    result["tasks"] = run_tasks(path, tasks, limit, threads, progress, n_gpu)
    if limit is not None:
        result["limit"] = int(limit)
    if speed:
        result["speed"] = measure_speed(path, threads=threads, progress=progress, gpu_layers=n_gpu)
    result["seconds"] = time.perf_counter() - start
    return result
