"""The exact table: each layer quantized alone at each width, scored by the search's own evaluator.

One forward pass over the evaluation windows per (layer, real type): 4 x 210 passes for SmolLM2-135M (37 minutes
on 2 CPU cores; the evaluator replays the base outputs of the blocks before the layer's own, which saves a third of
that: `ramp.evaluation.prefix`).  Two widths that fall back to one type in a layer are measured once.  The record is
saved every `SAVE_EVERY` evaluations, so a stopped measurement resumes where it stopped.
"""

import time

from tqdm.auto import tqdm

from halo import allocation as alloc_mod

from .cache import Record, save

SAVE_EVERY = 20


def measure(ctx, record: Record, path, layers=None, pairs=None) -> Record:
    """Fill `record.table` for `layers` (default all) x the search's actions, or only for the (layer, bits) `pairs`
    given; `record.complete` once every layer and width is in."""
    layers = ctx.layers if layers is None else layers
    if pairs is None:
        pairs = [(layer, bits) for layer in layers for bits in ctx.config.actions]
    else:
        layers = list({layer.index: layer for layer, _ in pairs}.values())
    todo = [(layer, bits) for layer, bits in pairs if str(bits) not in record.table.get(layer.gguf_name, {})]
    by_type = {}   # (layer, real type) -> KLD, so a fallback twin is not measured again
    for layer in layers:
        for bits, value in record.table.get(layer.gguf_name, {}).items():
            by_type[layer.gguf_name, alloc_mod.choice(layer, int(bits)).actual] = value
    started, fresh = time.perf_counter(), 0
    for layer, bits in tqdm(todo, desc="sensitivity (measured)", unit="eval"):
        qtype = alloc_mod.choice(layer, bits).actual
        key = (layer.gguf_name, qtype)
        if key not in by_type:
            types = [None] * len(ctx.layers)
            types[layer.index] = qtype
            by_type[key] = ctx.evaluator.evaluate(types).kld
            record.evaluations += 1
            fresh += 1
            record.table.setdefault(layer.gguf_name, {})[str(bits)] = by_type[key]
            if fresh % SAVE_EVERY == 0:
                record.seconds += time.perf_counter() - started
                started = time.perf_counter()
                save(path, record)
        record.table.setdefault(layer.gguf_name, {})[str(bits)] = by_type[key]
    record.seconds += time.perf_counter() - started
    record.complete = all(str(b) in record.table.get(layer.gguf_name, {})
                          for layer in ctx.layers for b in ctx.config.actions)
    save(path, record)
    return record
