"""The noise estimate (ExLlamaV3's optimizer does the same): one evaluation per layer instead of one per width.

Layer t alone gets Gaussian noise of relative Frobenius norm r_t, the relative error of its middle action's real
type (Q4_K with the default actions), and the evaluator measures the KL divergence that causes.  That gives
the layer's scale S_t = KL / r_t^2, and the loss of type K is modelled as S_t * rfn_t(K)^2, rfn_t(K) =
||dW_K|| / ||W|| the relative error of the bytes the export writes.  The noise of each layer is seeded by the
search seed and the layer's index, so the table is reproducible and resumes layer by layer.
"""

import time

import torch
from tqdm.auto import tqdm

from halo import allocation as alloc_mod

from .cache import Record, save

SAVE_EVERY = 20


def relative_error(cache, index: int, qtype) -> float:
    return float(cache.error(index, qtype).norm() / cache.base[index].detach().to("cpu", torch.float64).norm())


def noisy_weight(cache, index: int, scale: float, seed: int) -> torch.Tensor:
    """The layer's base weight plus Gaussian noise of relative norm `scale`."""
    base = cache.base[index].detach().to("cpu", torch.float32)
    generator = torch.Generator().manual_seed(seed * 1_000_003 + index)
    noise = torch.randn(base.shape, generator=generator)
    return base + noise * (scale * base.norm() / noise.norm())


def estimate(ctx, record: Record, path) -> Record:
    """Fill `record` with the noise estimate of every (layer, width); resumes layer by layer."""
    actions = sorted(ctx.config.actions)
    reference = actions[(len(actions) - 1) // 2]
    cache, started, fresh = ctx.evaluator.cache, time.perf_counter(), 0
    for layer in tqdm([x for x in ctx.layers if x.gguf_name not in record.table], desc="sensitivity (noise)",
                      unit="eval"):
        types = {b: alloc_mod.choice(layer, b).actual for b in ctx.config.actions}
        errors = {qtype: relative_error(cache, layer.index, qtype) for qtype in set(types.values())}
        r = errors[types[reference]]
        weights = {layer.index: noisy_weight(cache, layer.index, r, ctx.config.windows.seed)}
        kld = ctx.evaluator.evaluate([None] * len(ctx.layers), weights).kld
        record.evaluations += 1
        record.table[layer.gguf_name] = {str(b): kld / r ** 2 * errors[types[b]] ** 2 for b in ctx.config.actions}
        fresh += 1
        if fresh % SAVE_EVERY == 0:
            record.seconds += time.perf_counter() - started
            started = time.perf_counter()
            save(path, record)
    record.seconds += time.perf_counter() - started
    record.complete = True
    save(path, record)
    return record
