"""Quantized layers that keep training, and the short fine-tuning of DynaQuant's algorithm 1 (lines 7-8).

A quantized linear keeps its float32 master weight; a torch parametrization makes every forward pass use
`formats.fake_quant(master)`: the simulated bitsandbytes weight forward, the identity backward
(straight-through estimator), so AdamW updates the master and the next forward re-quantizes it.  Removing
the parametrization restores the master weight as a plain parameter.
"""

import torch
from torch.nn.utils import parametrize

from .formats import fake_quant


class FakeQuant(torch.nn.Module):
    """weight -> its simulated `fmt` version, straight-through for gradients."""

    def __init__(self, fmt: str):
        super().__init__()
        self.fmt = fmt

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return fake_quant(weight, self.fmt)


def set_format(module: torch.nn.Module, fmt: str | None) -> None:
    """Make `module.weight` behave as format `fmt` (None: plain float again)."""
    if parametrize.is_parametrized(module, "weight"):
        parametrize.remove_parametrizations(module, "weight", leave_parametrized=False)
    if fmt is not None:
        parametrize.register_parametrization(module, "weight", FakeQuant(fmt), unsafe=True)


def master_weight(module: torch.nn.Module) -> torch.nn.Parameter:
    """The trainable float weight of a layer, parametrized or not."""
    if parametrize.is_parametrized(module, "weight"):
        return module.parametrizations.weight.original
    return module.weight


def clear_formats(model: torch.nn.Module) -> None:
    for module in model.modules():
        if parametrize.is_parametrized(module, "weight"):
            set_format(module, None)


def make_optimizer(model: torch.nn.Module, lr: float) -> torch.optim.AdamW:
    """AdamW over every trainable parameter (weight decay 0: a few steps should not shrink the weights)."""
    return torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)


def finetune(model: torch.nn.Module, optimizer: torch.optim.Optimizer, batches: list[torch.Tensor],
             step: bool = True) -> float:
    """One AdamW step per batch of token windows (next-token loss); returns the mean loss.

    The gradients of the last batch stay in `.grad` (the next state reads gradient norms from them).
    With step=False only the gradients are computed (the state of an episode's first step).
    """
    model.train()
    losses = []
    for ids in batches:
        optimizer.zero_grad(set_to_none=True)
        loss = model(input_ids=ids, labels=ids).loss
        if not torch.isfinite(loss):
            raise FloatingPointError(f"fine-tuning loss is {float(loss)}; lower --ft-lr")
        loss.backward()
        if step:
            optimizer.step()
        losses.append(loss.item())
    model.eval()
    return sum(losses) / len(losses)
