"""DynaQuant's per-step reward (paper eq. 1-5) and the two measurements it needs that a plain PPL does not.

    r_i = w_perf (PPL_ref - PPL_quant) - w_KL KL(p_quant || p_ref) + w_ent (E_quant - E_ref)
          + w_mem ((16 - bits_i) / 16) (params of step i / params of the model)

PPL_ref and PPL_quant are both measured after the step's fine-tuning, on the same held-out windows; the
KL is averaged over every predicted position; E is the mean attention entropy of the step's transformer
block (over heads and query positions); bits_i is the nominal width of the step's format (4, 8 or 16).
Weights default to the DynaQuant README's 6.0, 5.0, 0.8, 4.0.
"""

from dataclasses import dataclass

import torch

TERMS = ("perf", "kl", "entropy", "memory")


@dataclass(frozen=True)
class StepMeasure:
    """What one step of the environment measured after fine-tuning."""

    ppl_ref: float
    ppl_quant: float
    kl: float            # mean KL(p_quant || p_ref) per predicted token
    entropy_ref: float   # mean attention entropy of the step's block, reference model
    entropy_quant: float


def reward_parts(m: StepMeasure, bits: int, step_params: int, model_params: int, weights) -> dict:
    """The four weighted terms of eq. 5 by name; their sum is the step's reward."""
    w_perf, w_kl, w_ent, w_mem = weights
    return {"perf": w_perf * (m.ppl_ref - m.ppl_quant), "kl": -w_kl * m.kl,
            "entropy": w_ent * (m.entropy_quant - m.entropy_ref),
            "memory": w_mem * (16 - bits) / 16 * step_params / model_params}


@torch.no_grad()
def kl_quant_ref(logits_quant: torch.Tensor, logits_ref: torch.Tensor) -> torch.Tensor:
    """KL(p_quant || p_ref) per position from two (..., V) logit tensors (summed over the vocabulary)."""
    assert logits_quant.shape == logits_ref.shape, (logits_quant.shape, logits_ref.shape)
    logp_q = torch.log_softmax(logits_quant.double(), dim=-1)
    logp_r = torch.log_softmax(logits_ref.double(), dim=-1)
    return (logp_q.exp() * (logp_q - logp_r)).sum(-1)


@torch.no_grad()
def attention_entropy(probs: torch.Tensor) -> float:
    """Mean entropy (nats) of attention rows: probs is (batch, heads, queries, keys), each row sums to 1."""
    assert probs.dim() == 4, probs.shape
    p = probs.double()
    rows = -(p * torch.log(p.clamp_min(1e-30))).sum(-1)
    assert torch.isfinite(rows).all(), "attention probabilities hold NaN or inf"
    return float(rows.mean())
