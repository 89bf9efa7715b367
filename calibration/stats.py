"""Streaming per-input-channel activation statistics from forward hooks.

For every quantizable linear layer a pre-forward hook sees the layer's input x (..., in_features)
and accumulates, per input channel: max |x|, sum |x| and sum x² (float64), plus the token count.
Memory is O(in_features) per layer whatever the amount of text.  mean x² is exactly the quantity
llama.cpp's imatrix stores.  Layers fed by the same tensor (q, k, v; gate, up) share one
computation.
"""

import inspect
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm


@dataclass
class ChannelStats:
    """Running statistics of one layer's input channels."""

    max_abs: torch.Tensor     # (in,) float64
    sum_abs: torch.Tensor     # (in,) float64
    sum_sq: torch.Tensor      # (in,) float64
    count: int = 0

    @classmethod
    def zeros(cls, channels: int) -> "ChannelStats":
        z = lambda: torch.zeros(channels, dtype=torch.float64)  # noqa: E731
        return cls(z(), z(), z(), 0)

    def update(self, max_abs, sum_abs, sum_sq, count: int) -> None:
        torch.maximum(self.max_abs, max_abs, out=self.max_abs)
        self.sum_abs += sum_abs
        self.sum_sq += sum_sq
        self.count += count

    @property
    def mean_abs(self) -> torch.Tensor:
        return self.sum_abs / max(self.count, 1)

    @property
    def mean_sq(self) -> torch.Tensor:
        return self.sum_sq / max(self.count, 1)


def _reduce(x: torch.Tensor):
    flat = x.reshape(-1, x.shape[-1]).to(torch.float64)
    a = flat.abs()
    return a.amax(dim=0).cpu(), a.sum(dim=0).cpu(), (flat * flat).sum(dim=0).cpu(), flat.shape[0]


def _last_logits_only(model) -> dict:
    """Forward arguments that ask for the logits of the last position only, where the model takes them.

    Every hooked layer sits before the output head, so its inputs are the same either way; the head over all
    positions is most of the pass for a large vocabulary (Gemma 3: 262k words, 4 GB of float32 logits a batch).
    """
    return {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(model.forward).parameters else {}


@torch.no_grad()
def collect(model, layers, batches, device: str = "cpu", desc: str = "calibration") -> dict[str, ChannelStats]:
    """Run `batches` (an iterable of (B, T) token tensors) through `model`; return stats by layer name."""
    modules = dict(model.named_modules())
    stats = {layer.name: ChannelStats.zeros(layer.in_features) for layer in layers}
    last = {"x": None, "value": None}  # holding x keeps its identity unambiguous

    def make_hook(name):
        def hook(_module, inputs):
            x = inputs[0]
            if x is not last["x"]:
                last["x"], last["value"] = x, _reduce(x)
            stats[name].update(*last["value"])
        return hook

    extra = _last_logits_only(model)
    handles = [modules[layer.name].register_forward_pre_hook(make_hook(layer.name)) for layer in layers]
    try:
        for batch in tqdm(batches, desc=desc, unit="batch"):
            last["x"] = None
            model(input_ids=batch.to(device), use_cache=False, **extra)
    finally:
        for handle in handles:
            handle.remove()
    for name, s in stats.items():
        if s.count == 0:
            raise RuntimeError(f"layer {name} saw no input during calibration")
        if not torch.isfinite(s.sum_sq).all():
            raise FloatingPointError(f"non-finite activations in the input of {name}")
    return stats
