"""The Fisher estimate: one backward pass over calibration text instead of one forward pass per (layer, width).

For a small change dW of one layer's weight the KL divergence from the base model is, to second order,
0.5 * dW^T F dW with F the Fisher information of the base model's own predictive distribution (the gradient of
the KL is zero at the base, and its Hessian there is F).  F is estimated with labels SAMPLED from the base
model's predictions, not the text's next tokens: the squared gradient of the log-likelihood of sampled labels
is an unbiased estimate of F, while that of the true tokens (the "empirical Fisher" of NLL) is not, and this
estimate is in the same units as the measured table (nats of KL per position).

Per layer only two vectors are kept (memory stays per layer, never per weight): G (out features), the mean
over positions of the squared gradient of the sampled-label loss with respect to the layer's output, and A
(in features), the mean squared input of the layer on the same tokens (llama.cpp's imatrix quantity).  F's
diagonal for weight (i, j) is approximated by G_i * A_j, so a candidate type's loss is

    KL(type) ~= 0.5 * sum_ij G_i A_j dW_ij^2,   dW = (libggml's dequantization of the type) - W,

with dW the exact error of the bytes the export writes (the evaluator's weight cache).  The windows are the
first `samples` calibration windows of the artifact (the same text that made its imatrix), never evaluation
text.  On SmolLM2-135M: 16 x 512 tokens, about a minute on 2 CPU cores.
"""

import time

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from halo import allocation as alloc_mod
from ramputils.errors import UserError

from .cache import Record, save


def calibration_windows(ctx, samples: int) -> torch.Tensor:
    """The artifact's first `samples` calibration windows (its own seed and length), BOS first."""
    from calibration.data import bos_id, calibration_windows as windows, load_text, tokenize
    from calibration.models import load_tokenizer

    manifest = ctx.calibration.manifest
    inputs, text = manifest["inputs"], load_text(manifest["calibration"].get("data", "wikitext2"))
    if text.sha256 != inputs["data_sha256"]:
        raise UserError(f"the calibration text {text.label} changed since {ctx.calibration.path} was made; "
                        "calibrate again")
    tokenizer = load_tokenizer(ctx.source)
    tokens = tokenize(tokenizer, text.text)
    return windows(tokens, min(samples, inputs["samples"]), inputs["seq_len"], inputs["seed"], bos_id(tokenizer))


def moments(model, layers, windows: torch.Tensor, seed: int, device="cpu", progress: bool = True) -> tuple[dict, dict]:
    """({layer name: G (out,)}, {layer name: A (in,)}) over `windows`, one window per backward pass."""
    modules = dict(model.named_modules())
    grad_sq = {layer.name: torch.zeros(layer.out_features, dtype=torch.float64) for layer in layers}
    input_sq = {layer.name: torch.zeros(layer.in_features, dtype=torch.float64) for layer in layers}
    counts = {"positions": 0, "inputs": 0}

    def hook(name):
        def forward_hook(_module, inputs, output):
            x = inputs[0].detach().reshape(-1, inputs[0].shape[-1]).double()
            input_sq[name] += (x * x).sum(0).cpu()

            def backward_hook(grad):
                g = grad.reshape(-1, grad.shape[-1]).double()
                grad_sq[name] += (g * g).sum(0).cpu()
            output.register_hook(backward_hook)
        return forward_hook

    frozen = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in frozen:
        p.requires_grad_(False)   # gradients flow through the activations only: no weight-sized buffers
    handles = [modules[layer.name].register_forward_hook(hook(layer.name)) for layer in layers]
    generator = torch.Generator(device="cpu").manual_seed(seed)
    try:
        for window in tqdm(windows, desc="sensitivity (fisher)", unit="window", disable=not progress):
            ids = window[None].to(device)
            embeds = model.get_input_embeddings()(ids).detach().requires_grad_(True)
            logits = model(inputs_embeds=embeds, use_cache=False).logits[0, :-1].float()
            with torch.no_grad():
                probs = torch.softmax(logits, -1).cpu()
                labels = torch.multinomial(probs, 1, generator=generator).view(-1).to(device)
            F.cross_entropy(logits, labels, reduction="sum").backward()
            counts["positions"] += logits.shape[0]
            counts["inputs"] += ids.shape[1]
    finally:
        for handle in handles:
            handle.remove()
        for p, flag in frozen:
            p.requires_grad_(flag)
    for name in grad_sq:
        if not (torch.isfinite(grad_sq[name]).all() and torch.isfinite(input_sq[name]).all()):
            raise FloatingPointError(f"non-finite gradients or activations at {name}")
    return ({name: g / counts["positions"] for name, g in grad_sq.items()},
            {name: a / counts["inputs"] for name, a in input_sq.items()})


def predicted(cache, index: int, qtype, g: torch.Tensor, a: torch.Tensor) -> float:
    """0.5 * sum_ij G_i A_j dW_ij^2 for layer `index` at `qtype`."""
    error = cache.error(index, qtype)
    assert error.shape == (g.numel(), a.numel()), (error.shape, g.shape, a.shape)
    return float(0.5 * (g @ (error * error) @ a))


def estimate(ctx, record: Record, path) -> Record:
    """Fill `record` with the Fisher estimate of every (layer, width)."""
    started = time.perf_counter()
    windows = calibration_windows(ctx, ctx.config.fisher_samples)
    cache = ctx.evaluator.cache
    g, a = moments(ctx.evaluator.model, ctx.layers, windows, ctx.config.windows.seed, ctx.evaluator.device)
    for layer in tqdm(ctx.layers, desc="sensitivity (fisher, per type)", unit="layer"):
        values = {}
        for bits in ctx.config.actions:
            qtype = alloc_mod.choice(layer, bits).actual
            if qtype not in values:
                values[qtype] = predicted(cache, layer.index, qtype, g[layer.name], a[layer.name])
            record.table.setdefault(layer.gguf_name, {})[str(bits)] = values[qtype]
    record.seconds += time.perf_counter() - started
    record.complete = True
    save(path, record)
    return record
