"""Prompt-processing and generation speed, as llama-bench's pp and tg tests measure them.

pp N: N random tokens (BOS first when the model adds BOS) decoded in batches of n_batch from an empty
KV cache, logits of the last token only.  tg N: N single-token decodes from an empty KV cache, each
asking for its logits.  One warm-up run each, then the median tokens/s of `reps` timed runs.
"""

import os
import time

import numpy as np
from tqdm.auto import tqdm

from . import Model


def _random_tokens(model: Model, n: int, seed: int = 0) -> np.ndarray:
    tokens = np.random.default_rng(seed).integers(0, model.n_vocab, size=n, dtype=np.int32)
    if model.add_bos:
        tokens[0] = model.bos
    return tokens


def _time_pp(model: Model, tokens: np.ndarray) -> float:
    model.forget(0)
    start = time.perf_counter()
    model.decode(tokens)
    return time.perf_counter() - start


def _time_tg(model: Model, tokens: np.ndarray) -> float:
    model.forget(0)
    start = time.perf_counter()
    for pos, token in enumerate(tokens):
        model.decode(tokens[pos:pos + 1], pos)
    return time.perf_counter() - start


def speed(path, n_prompt: int = 512, n_gen: int = 128, reps: int = 3, threads: int | None = None,
          progress: bool = True, gpu_layers: int = 0) -> dict:
    """{"pp512": tokens/s, "tg128": tokens/s, ...} of GGUF `path` (names follow n_prompt and n_gen)."""
    threads = threads or os.cpu_count()
    with Model(path, n_ctx=max(n_prompt, n_gen), threads=threads, gpu_layers=gpu_layers) as model:
        prompt, gen = _random_tokens(model, n_prompt), _random_tokens(model, n_gen, seed=1)
        runs = [("pp", _time_pp, prompt), ("tg", _time_tg, gen)]
        result = {"threads": threads, "reps": reps}
        bar = tqdm(total=2 * (reps + 1), desc="speed", unit="run", disable=not progress)
        for name, timer, tokens in runs:
            seconds = []
            for rep in range(reps + 1):
                elapsed = timer(model, tokens)
                if rep:  # the first run warms up
                    seconds.append(elapsed)
                bar.update()
            rates = len(tokens) / np.asarray(seconds)
            result[f"{name}{len(tokens)}"] = float(np.median(rates))
            result[f"{name}{len(tokens)}_runs"] = [float(r) for r in rates]
        bar.close()
    return result
