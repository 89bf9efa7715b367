"""One measurement of the reference and the partially quantized model on the held-out windows.

Both models read the same windows, one at a time; per window we keep only the sums needed for the
perplexities, the mean KL(p_quant || p_ref) over every predicted position, and the attention entropy of
every block (transformers returns the attention probabilities with `output_attentions`, which
needs the eager attention implementation: `use_eager_attention` switches a model to it).
"""

import math

import torch
import torch.nn.functional as F
from torch.nn.utils import parametrize

from .reward import StepMeasure, attention_entropy, kl_quant_ref


def use_eager_attention(model) -> None:
    """Attention probabilities are only returned by the eager implementation."""
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation("eager")
    else:  # older transformers
        model.config._attn_implementation = "eager"


@torch.no_grad()
def _pass(model, ids: torch.Tensor):
    out = model(input_ids=ids, output_attentions=True)
    return out.logits[:, :-1].float(), out.attentions


@torch.no_grad()
def measure(ref, quant, windows: torch.Tensor, block: int) -> tuple[StepMeasure, list[float]]:
    """(StepMeasure of transformer block `block`, the quantized model's attention entropy of every block).

    PPL = exp(mean NLL of tokens 1..T-1) over all windows, for each model; KL averaged over the same positions.
    """
    nll_ref = nll_quant = kl = ent_ref = 0.0
    ent_quant = None
    count = 0
    with parametrize.cached():  # quantize each parametrized weight once per measurement, not per window
        for window in windows:
            ids = window.unsqueeze(0)
            targets = ids[:, 1:].flatten()
            logits_r, attn_r = _pass(ref, ids)
            logits_q, attn_q = _pass(quant, ids)
            nll_ref += float(F.cross_entropy(logits_r.flatten(0, 1).double(), targets, reduction="sum"))
            nll_quant += float(F.cross_entropy(logits_q.flatten(0, 1).double(), targets, reduction="sum"))
            kl += float(kl_quant_ref(logits_q, logits_r).sum())
            count += targets.numel()
            ent_ref += attention_entropy(attn_r[block]) / len(windows)
            per_block = [attention_entropy(a) / len(windows) for a in attn_q]
            ent_quant = per_block if ent_quant is None else [x + y for x, y in zip(ent_quant, per_block)]
    for value in (nll_ref, nll_quant, kl):
        if not math.isfinite(value):
            raise FloatingPointError("the measurement produced NaN or inf")
    result = StepMeasure(ppl_ref=math.exp(nll_ref / count), ppl_quant=math.exp(nll_quant / count), kl=kl / count,
                         entropy_ref=ent_ref, entropy_quant=ent_quant[block])
    return result, ent_quant
