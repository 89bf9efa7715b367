"""Scale folding (RAMP algorithm 2, table 11): move activation outliers into the weights.

For each block, s = sqrt(act_scale) of the attention input channels (act_scale = calibration max |x|
of q_proj's input), s <- s / mean(s) + 1e-5; the input columns of q, k, v are multiplied by s and the
RMSNorm that feeds them is divided by s.  The same for gate/up with the norm that feeds the MLP
(post_attention_layernorm; Gemma 3's pre_feedforward_layernorm).  In exact arithmetic the forward pass
is unchanged: norm(x) / s then W * s.  Gemma's norms compute x_hat * (1 + w), so there the stored
weight becomes (1 + w) / s - 1.  Token embeddings and the output head are never touched, so tied
embeddings stay tied.

The folded inputs are x / s, so the importance matrix (mean x^2) of a folded layer is mean x^2 / s^2:
`folded_imatrix` gives it, and HALO must use it when it quantizes folded weights.
"""

from dataclasses import dataclass

import numpy as np
import torch

from calibration.layers import decoder_blocks, layer_table
from ramputils.errors import UserError

EPS = 1e-5
# per supported model_type: (norm feeding q/k/v, norm feeding gate/up)
FOLD_NORMS = {
    "llama": ("input_layernorm", "post_attention_layernorm"),
    "mistral": ("input_layernorm", "post_attention_layernorm"),
    "qwen2": ("input_layernorm", "post_attention_layernorm"),
    "gemma3": ("input_layernorm", "pre_feedforward_layernorm"),
    "gemma3_text": ("input_layernorm", "pre_feedforward_layernorm"),
}
ONE_PLUS_W_NORMS = {"GemmaRMSNorm", "Gemma2RMSNorm", "Gemma3RMSNorm"}


@dataclass
class FoldScales:
    """The scale vector applied to each folded layer's input channels, by layer (module) name."""

    by_layer: dict[str, np.ndarray]

    def for_layer(self, name: str) -> np.ndarray | None:
        return self.by_layer.get(name)


def fold_scale(act_max: np.ndarray) -> np.ndarray:
    """s = sqrt(act_scale), normalised to mean 1, plus 1e-5 (table 11)."""
    act_max = np.asarray(act_max, dtype=np.float64)
    assert act_max.ndim == 1 and (act_max >= 0).all(), act_max.shape
    s = np.sqrt(act_max)
    mean = s.mean()
    if not np.isfinite(mean) or mean <= 0:
        raise UserError("cannot fold scales: the calibration saw only zero activations for a layer")
    return s / mean + EPS


@torch.no_grad()
def _fold_group(norm, linears, s: torch.Tensor) -> None:
    """Multiply the input columns of `linears` by s and divide `norm` by s."""
    for linear in linears:
        assert linear.weight.shape[1] == s.shape[0], (linear.weight.shape, s.shape)
        linear.weight.mul_(s.to(linear.weight.dtype)[None, :])
    weight = norm.weight
    assert weight.shape == s.shape, (weight.shape, s.shape)
    if type(norm).__name__ in ONE_PLUS_W_NORMS:
        weight.copy_(((1.0 + weight.double()) / s.double() - 1.0).to(weight.dtype))
    else:
        weight.div_(s.to(weight.dtype))
    if getattr(norm, "bias", None) is not None:
        norm.bias.div_(s.to(norm.bias.dtype))
    if not torch.isfinite(weight).all():
        raise FloatingPointError("scale folding produced non-finite norm weights")


@torch.no_grad()
def fold_model(model, calibration) -> FoldScales:
    """Fold in place; `calibration` is the artifact of this same model (its max |x| per channel)."""
    model_type = model.config.model_type
    if model_type not in FOLD_NORMS:
        raise UserError(f"scale folding is not exact for architecture {model_type!r}; "
                        f"supported: {', '.join(sorted(FOLD_NORMS))}")
    attn_norm, ffn_norm = FOLD_NORMS[model_type]
    calibration.check_layers(layer_table(model, calibration.manifest["model"]["gguf_arch"]))
    by_name = {layer.name: layer for layer in calibration.layers}
    modules = dict(model.named_modules())
    applied = {}
    for b, block in enumerate(decoder_blocks(model)):
        for norm_name, group in ((attn_norm, ("q", "k", "v")), (ffn_norm, ("gate", "up"))):
            layers = [layer for layer in by_name.values() if layer.block == b and layer.role in group]
            if len(layers) != len(group):
                raise UserError(f"block {b}: cannot fold, expected {group} layers in the calibration, "
                                f"found {[layer.role for layer in layers]}")
            missing = [layer.name for layer in layers if layer.name not in modules]
            norm = getattr(block, norm_name, None)
            if missing or norm is None:
                raise UserError(f"the calibration does not belong to this model (block {b}: "
                                f"{missing or norm_name} not found); calibrate this model first")
            s = fold_scale(calibration.channel(layers[0].gguf_name, "act_max"))
            _fold_group(norm, [modules[layer.name] for layer in layers], torch.from_numpy(s))
            for layer in layers:
                applied[layer.name] = s
    return FoldScales(applied)


def folded_imatrix(mean_sq: np.ndarray, scale: np.ndarray | None) -> np.ndarray:
    """The importance (mean x^2) of a layer's inputs after folding: x / s, so mean x^2 / s^2."""
    if scale is None:
        return mean_sq
    return (np.asarray(mean_sq, dtype=np.float64) / np.asarray(scale, dtype=np.float64) ** 2).astype(np.float32)
