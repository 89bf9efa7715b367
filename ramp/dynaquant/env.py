"""DynaQuant's environment (paper section 3.1, algorithm 1): one step quantizes one transformer block (or one
linear layer), fine-tunes both models briefly on the same mini-batches and measures them.

Two models: the reference (float32 weights of the base) and a copy being quantized.  `reset` restores both
to the base weights and starts fresh AdamW states.  `step(a)` gives every linear of the step format
`formats[a]` (simulated bitsandbytes, straight-through), runs `ft_steps` AdamW steps (lr `ft_lr`) on each model
with the same `ft_batch` calibration windows, measures both on the held-out windows and returns eq. 5's reward.

State (12 numbers, standardised by a running mean/variance kept in the checkpoint):
weight mean and std of the step's layers, their gradient norm (last fine-tuning batch), the quantized model's
attention entropy of the step's block, normalised index i/N, the quantized model's current PPL and its change
over the previous step, the previous action's bits/16 (1.0 before the first), EMAs of the four reward terms.
Mini-batches come from a generator seeded by (seed, episode): an episode replays exactly, which makes resume exact.
"""

import copy
from dataclasses import asdict

import numpy as np
import torch

from ..config.dynaquant import DQConfig
from . import formats as fmt_mod
from .finetune import clear_formats, finetune, make_optimizer, master_weight, set_format
from .measure import measure, use_eager_attention
from .reward import TERMS, reward_parts

STATE_FEATURES = ("weight_mean", "weight_std", "grad_norm", "attention_entropy", "index", "ppl", "ppl_delta",
                  "prev_bits", "ema_perf", "ema_kl", "ema_entropy", "ema_memory")
STATE_DIM = len(STATE_FEATURES)


class RunningNorm:
    """Running mean and variance (Chan et al. merge), used to standardise states; clipped to +-10."""

    def __init__(self, dim: int):
        self.mean, self.var, self.count = np.zeros(dim), np.ones(dim), 1e-4

    def __call__(self, x: np.ndarray, update: bool = True) -> np.ndarray:
        if update:
            delta, total = x - self.mean, self.count + 1
            self.mean = self.mean + delta / total
            self.var = (self.var * self.count + delta ** 2 * self.count / total) / total
            self.count = total
        return np.clip((x - self.mean) / np.sqrt(self.var + 1e-8), -10, 10).astype(np.float32)

    def state_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "var": self.var.tolist(), "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        self.mean, self.var, self.count = np.array(state["mean"]), np.array(state["var"]), state["count"]


def step_groups(layers, granularity: str) -> list[list[int]]:
    """Layer indices per step: grouped by transformer block, or one layer per step."""
    if granularity == "layer":
        return [[layer.index] for layer in layers]
    groups = {}
    for layer in layers:
        groups.setdefault(layer.block, []).append(layer.index)
    return [groups[b] for b in sorted(groups)]


class DynaQuantEnv:
    def __init__(self, model, layers, train_windows: torch.Tensor, eval_windows: torch.Tensor, config: DQConfig,
                 seed: int = 0):
        use_eager_attention(model)
        self.ref, self.quant = model, copy.deepcopy(model)
        self.pristine = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.layers, self.config, self.seed = layers, config, seed
        self.train_windows, self.eval_windows = train_windows, eval_windows
        self.groups = step_groups(layers, config.granularity)
        self.blocks = [layers[g[0]].block for g in self.groups]
        modules = dict(self.quant.named_modules())
        self.modules = [modules[layer.name] for layer in layers]
        self.model_params = sum(p.numel() for p in model.parameters())
        self.norm = RunningNorm(STATE_DIM)
        self.formats: list[str | None] = []

    @property
    def n_steps(self) -> int:
        return len(self.groups)

    def _batches(self) -> list[torch.Tensor]:
        picks = torch.randint(len(self.train_windows), (self.config.ft_steps, self.config.ft_batch),
                              generator=self.generator)
        return [self.train_windows[p] for p in picks]

    def reset(self, episode: int, update_norm: bool = True) -> np.ndarray:
        for model in (self.ref, self.quant):
            clear_formats(model)
            model.load_state_dict(self.pristine)
        self.opt_ref, self.opt_quant = make_optimizer(self.ref, self.config.ft_lr), make_optimizer(
            self.quant, self.config.ft_lr)
        self.generator = torch.Generator().manual_seed(self.seed * 1_000_003 + episode)
        self.formats, self.i = [None] * len(self.layers), 0
        self.ema, self.prev_bits = np.zeros(len(TERMS)), 16
        finetune(self.quant, self.opt_quant, self._batches()[:1], step=False)  # gradients for the first state
        first, self.entropies = measure(self.ref, self.quant, self.eval_windows, self.blocks[0])
        self.ppl, self.ppl_delta, self.ppl_start = first.ppl_quant, 0.0, first.ppl_ref
        return self._obs(update_norm)

    def _obs(self, update_norm: bool) -> np.ndarray:
        weights = [master_weight(self.modules[j]) for j in self.groups[self.i]]
        flat = torch.cat([w.detach().flatten() for w in weights])
        grads = [w.grad for w in weights if w.grad is not None]
        grad_norm = float(torch.sqrt(sum((g.double() ** 2).sum() for g in grads))) if grads else 0.0
        raw = np.array([float(flat.mean()), float(flat.std()), grad_norm, self.entropies[self.blocks[self.i]],
                        self.i / self.n_steps, self.ppl, self.ppl_delta, self.prev_bits / 16, *self.ema])
        return self.norm(raw, update_norm)

    def step(self, action: int, update_norm: bool = True):
        """Returns (next observation, reward, done, info)."""
        fmt = self.config.formats[action]
        group = self.groups[self.i]
        for j in group:
            set_format(self.modules[j], fmt)
            self.formats[j] = fmt
        batches = self._batches()
        finetune(self.ref, self.opt_ref, batches)
        finetune(self.quant, self.opt_quant, batches)
        m, self.entropies = measure(self.ref, self.quant, self.eval_windows, self.blocks[self.i])
        step_params = sum(self.layers[j].params for j in group)
        parts = reward_parts(m, fmt_mod.BITS[fmt], step_params, self.model_params, self.config.weights)
        decay = self.config.ema_decay
        self.ema = decay * self.ema + (1 - decay) * np.array([parts[t] for t in TERMS])
        self.ppl_delta, self.ppl, self.prev_bits = m.ppl_quant - self.ppl, m.ppl_quant, fmt_mod.BITS[fmt]
        self.i += 1
        done = self.i == self.n_steps
        info = {"format": fmt, "parts": parts, "measure": asdict(m)}
        if done:
            info["formats"] = list(self.formats)
            return np.zeros(STATE_DIM, dtype=np.float32), sum(parts.values()), True, info
        return self._obs(update_norm), sum(parts.values()), False, info
