"""Perplexity over a text file, scored exactly as `llama-perplexity` scores it by default.

tools/perplexity/perplexity.cpp (`perplexity()`): the whole text is tokenized once (BOS in front when
the model adds BOS), cut into `n_chunk = len(tokens) // n_ctx` windows of n_ctx tokens (at least two
windows' worth is required), the first token of each window is replaced by BOS when the model adds
BOS, the KV cache is cleared per window, and only the second half is scored: the logits at
positions first = n_ctx/2 .. n_ctx-2 predict tokens first+1 .. n_ctx-1 (n_ctx - first - 1 tokens per
window).  PPL = exp(mean NLL) and its ± is PPL * sqrt((E[nll^2] - E[nll]^2) / (count - 1)).
"""

import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ramputils.errors import UserError

from . import Model, log_softmax


def default_text() -> Path:
    """wiki.test.raw, the file the llama.cpp docs run `llama-perplexity -f` on."""
    from calibration.paths import wikitext2

    return wikitext2("test")


def read_text(text_file=None) -> str:
    path = Path(text_file) if text_file else default_text()
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read text file {path}: {exc}") from None


def n_windows(n_tokens: int, n_ctx: int, max_chunks: int | None) -> int:
    """How many windows llama-perplexity scores (`--chunks max_chunks`)."""
    if n_tokens < 2 * n_ctx:
        raise UserError(f"the text tokenizes to {n_tokens} tokens; perplexity with context {n_ctx} "
                        f"needs at least {2 * n_ctx}")
    if max_chunks is not None and max_chunks < 1:
        raise UserError(f"max_chunks must be at least 1, got {max_chunks}")
    n = n_tokens // n_ctx
    return n if max_chunks is None else min(n, int(max_chunks))


def window_targets(tokens: np.ndarray, index: int, n_ctx: int) -> np.ndarray:
    """The tokens that window `index`'s scored positions predict."""
    return tokens[index * n_ctx + n_ctx // 2 + 1:(index + 1) * n_ctx]


def window_logits(model: Model, tokens: np.ndarray, index: int) -> np.ndarray:
    """llama.cpp's float32 logits (n_ctx-first-1, vocab) of window `index`, scored positions only."""
    n_ctx = model.n_ctx
    first = n_ctx // 2
    window = tokens[index * n_ctx:(index + 1) * n_ctx].copy()
    if model.add_bos:
        window[0] = model.bos
    model.forget(0)
    return model.decode(window, 0, np.arange(n_ctx) >= first)[:-1]


def window_logprobs(model: Model, tokens: np.ndarray, index: int):
    """(log-probs float64 (n_ctx-first-1, vocab), targets) of window `index`, scored positions only."""
    return log_softmax(window_logits(model, tokens, index)), window_targets(tokens, index, model.n_ctx)


def mean_err(values: np.ndarray) -> tuple[float, float]:
    """llama.cpp's mean and its standard error sqrt((E[x^2] - E[x]^2) / (n - 1))."""
    values = np.asarray(values, dtype=np.float64)
    mean = float(values.mean())
    var = float((values * values).mean() - mean * mean)
    return mean, (np.sqrt(var / (len(values) - 1)) if var > 0 and len(values) > 1 else 0.0)


def ppl_stats(nll: np.ndarray) -> dict:
    """PPL and its ± from per-token negative log-likelihoods."""
    mean, err = mean_err(nll)
    ppl = float(np.exp(mean))
    return {"ppl": ppl, "ppl_err": float(err * ppl), "nll": mean}


def model_perplexity(model, text_file=None, max_chunks: int | None = None, progress: bool = True,
                     desc: str = "perplexity") -> dict:
    """Perplexity of an open model (a llama.cpp `Model`, or anything with its interface) over `text_file`."""
    tokens = model.tokenize(read_text(text_file))
    n = n_windows(len(tokens), model.n_ctx, max_chunks)
    nll = []
    for index in tqdm(range(n), desc=desc, unit="chunk", disable=not progress):
        logp, targets = window_logprobs(model, tokens, index)
        nll.append(-logp[np.arange(len(targets)), targets])
    nll = np.concatenate(nll)
    return ppl_stats(nll) | {"chunks": n, "tokens": int(len(nll)), "n_ctx": model.n_ctx}


def perplexity(path, text_file=None, n_ctx: int = 512, max_chunks: int | None = None,
               threads: int | None = None, progress: bool = True, gpu_layers: int = 0) -> dict:
    """Perplexity of a GGUF file over `text_file` (default wiki.test.raw), like `llama-perplexity -c n_ctx`."""
    start = time.perf_counter()
    with Model(path, n_ctx=n_ctx, threads=threads, gpu_layers=gpu_layers) as model:
        result = model_perplexity(model, text_file, max_chunks, progress)
    return result | {"seconds": time.perf_counter() - start}
