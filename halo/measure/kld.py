"""KL divergence of a quantized GGUF against a base GGUF, like `llama-perplexity --kl-divergence`.

Same tokens (the base's tokenization), windows and scored positions as `perplexity`.  The two files
run side by side, window by window, in two llama.cpp contexts: the base's log-probabilities of one
window live only while that window is compared, so memory stays at two windows of logits.  With
`base_cache` the base's float32 logits of each window are read from (or first written to) that folder
(`base_logits.py`), exactly as decoded, so a cached run gives the same numbers.  (llama.cpp instead
saves the base's log-probs quantized to 16 bits, with base probabilities below e^-16 dropped; here the
KLD is the exact float64 sum over the whole vocabulary, so a file against itself gives exactly 0.)

Per scored token: KLD(base||quant) = sum_v p_base(v) (log p_base(v) - log p_quant(v)); "same top"
when both argmaxes agree; Δp = p_quant(target) - p_base(target).  The summary has llama.cpp's
statistics: mean ± (standard error), median, 99th percentile and maximum KLD, same-top rate ±,
both perplexities, their difference and ln ratio with the covariance-aware ±, and RMS Δp.
"""

import time

import numpy as np
from tqdm.auto import tqdm

from ramputils.errors import UserError

from . import Model, log_softmax
from .base_logits import BaseLogits
from .perplexity import (
    default_text,
    mean_err,
    n_windows,
    ppl_stats,
    read_text,
    window_logits,
    window_logprobs,
    window_targets,
)


def token_kld(logp_base: np.ndarray, logp_quant: np.ndarray) -> np.ndarray:
    """KLD(base||quant) per row of two float64 log-probability matrices."""
    return (np.exp(logp_base) * (logp_base - logp_quant)).sum(axis=1)


def _covariance(a: np.ndarray, b: np.ndarray) -> float:
    """llama.cpp's covariance of the two means (0 for fewer than 10 values)."""
    if len(a) < 10:
        return 0.0
    return float(((a * b).mean() - a.mean() * b.mean()) / (len(a) - 1))


def summarize(kld: np.ndarray, same_top: np.ndarray, nll: np.ndarray, nll_base: np.ndarray) -> dict:
    """llama.cpp's --kl-divergence statistics from per-token arrays."""
    kld_mean, kld_err = mean_err(kld)
    top = float(same_top.mean())
    quant, base = ppl_stats(nll), ppl_stats(nll_base)
    log_err, log_err_base = quant["ppl_err"] / quant["ppl"], base["ppl_err"] / base["ppl"]
    cov = _covariance(nll, nll_base)
    ratio_err = np.sqrt(max(0.0, log_err ** 2 + log_err_base ** 2 - 2 * cov))
    delta_err = np.sqrt(max(0.0, quant["ppl_err"] ** 2 + base["ppl_err"] ** 2
                            - 2 * quant["ppl"] * base["ppl"] * cov))
    p_diff = np.exp(-nll) - np.exp(-nll_base)
    return {
        "kld_mean": kld_mean, "kld_mean_err": kld_err,
        "kld_median": float(np.median(kld)), "kld_p99": float(np.percentile(kld, 99)),
        "kld_max": float(kld.max()),
        "same_top": top, "same_top_err": float(np.sqrt(top * (1 - top) / max(1, len(kld) - 1))),
        "ppl": quant["ppl"], "ppl_err": quant["ppl_err"],
        "ppl_base": base["ppl"], "ppl_base_err": base["ppl_err"],
        "ppl_delta": quant["ppl"] - base["ppl"], "ppl_delta_err": float(delta_err),
        "ln_ppl_ratio": quant["nll"] - base["nll"], "ln_ppl_ratio_err": float(ratio_err),
        "rms_dp": float(np.sqrt((p_diff ** 2).mean())),
    }


def kl_divergence(path, base, text_file=None, n_ctx: int = 512, max_chunks: int | None = None,
                  threads: int | None = None, progress: bool = True, base_cache=None, gpu_layers: int = 0) -> dict:
    """Compare GGUF `path` with GGUF `base` on `text_file` (default wiki.test.raw), window by window;
    `base_cache`: a folder keeping the base's logits between runs; `gpu_layers`: llama.cpp's n_gpu_layers."""
    start = time.perf_counter()
    with (Model(base, n_ctx=n_ctx, threads=threads, gpu_layers=gpu_layers) as ref,
          Model(path, n_ctx=n_ctx, threads=threads, gpu_layers=gpu_layers) as model):
        if ref.n_vocab != model.n_vocab:
            raise UserError(f"{path} has a vocabulary of {model.n_vocab} tokens, the base {base} "
                            f"{ref.n_vocab}: KL divergence needs the same vocabulary")
        tokens = ref.tokenize(read_text(text_file))
        n = n_windows(len(tokens), n_ctx, max_chunks)
        cache = BaseLogits(base_cache, base, text_file or default_text(), n_ctx, ref.threads,
                           ref.n_vocab, ref.backend) if base_cache else None
        parts = {"kld": [], "same_top": [], "nll": [], "nll_base": []}
        for index in tqdm(range(n), desc="KL divergence", unit="chunk", disable=not progress):
            logits_base = cache.get(index) if cache else None
            if logits_base is None:
                logits_base = window_logits(ref, tokens, index)
                if cache:
                    cache.put(index, logits_base)
            logp_base, targets = log_softmax(logits_base), window_targets(tokens, index, n_ctx)
            logp, _ = window_logprobs(model, tokens, index)
            rows = np.arange(len(targets))
            parts["kld"].append(token_kld(logp_base, logp))
            parts["same_top"].append(logp_base.argmax(axis=1) == logp.argmax(axis=1))
            parts["nll"].append(-logp[rows, targets])
            parts["nll_base"].append(-logp_base[rows, targets])
            del logits_base, logp_base, logp
    arrays = {key: np.concatenate(value) for key, value in parts.items()}
    return summarize(**arrays) | {"chunks": n, "tokens": int(len(arrays["kld"])), "n_ctx": n_ctx,
                                  "seconds": time.perf_counter() - start}
