"""The search's evaluator: perplexity and KL divergence of an allocation, from exactly the exported weights.

`Evaluator.evaluate(types)` swaps the cached weights of `types` (one real GGUF type per layer, or None
for the base weights; see `ramp.weight_cache`) into the model, runs ONE batched forward pass over the
evaluation windows and puts the base weights back.  Scoring, for N windows of T tokens:

* PPL = exp(mean NLL) over every position 1..T-1 of every window (the token at t is predicted from
  tokens 0..t-1), N * (T - 1) predictions; position 0 (BOS) is never predicted.
* KLD = mean over the same positions of KL(base || quantized) = sum_v p_v (log p_v - log q_v), with
  the base model's log-probabilities computed once, at construction.

The base log-probabilities are stored in float32, (N, T-1, V): 4 * N * (T-1) * V bytes, 401 MB for
the default evaluation (8 windows x 256 tokens, vocabulary 49152), on the model's device.  Float32 is
what keeps the KLD exact: each term p (log p - log q) is formed elementwise (torch's kl_div) before
summing, so no large numbers cancel; on the default model the KLD of uniform Q4_K agrees with a
float64 computation to 1e-5 relative.  Float16 would round log p ~ -10 by up to 4e-3, more than the
default model's whole Q8_0 KLD (1.3e-3).  KL terms are summed one window at a time, which bounds the
temporaries to a few (T-1, V) float32 tensors.
"""

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from calibration.errors import UserError
from halo import qtypes

from .weight_cache import WeightCache

QType = qtypes.QType


@dataclass(frozen=True)
class EvalResult:
    ppl: float
    kld: float
    seconds: float


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class Evaluator:
    """Scores allocations of `layers` against the base model on fixed token windows."""

    def __init__(self, model, layers, candidates: dict, windows: torch.Tensor, imatrix: dict | None = None,
                 device=None, plan: str = "auto", batch_size: int = 8, progress: bool = True):
        windows = torch.as_tensor(windows)
        if windows.ndim != 2 or windows.shape[1] < 2 or windows.dtype != torch.long:
            raise UserError(f"evaluation windows must be a (N, T >= 2) LongTensor, got {tuple(windows.shape)} "
                            f"{windows.dtype}")
        if batch_size < 1:
            raise UserError(f"batch size must be at least 1, got {batch_size}")
        self.device = torch.device(device) if device is not None else default_device()
        self.model = model.to(self.device).eval()
        self.layers = list(layers)
        self.windows = windows.to(self.device)
        self.batch_size = int(batch_size)
        self.cache = WeightCache(self.model, self.layers, candidates, imatrix, plan, progress)
        start = time.perf_counter()
        self.base_logprobs = [torch.log_softmax(self._logits(batch), dim=-1) for batch in self._batches()]
        nll = sum(float(self._nll(lp, batch).sum()) for lp, batch in zip(self.base_logprobs, self._batches()))
        self.base = EvalResult(float(np.exp(nll / self.positions)), 0.0, time.perf_counter() - start)

    @property
    def positions(self) -> int:
        """Predictions scored per evaluation: N * (T - 1)."""
        return self.windows.shape[0] * (self.windows.shape[1] - 1)

    @property
    def base_logprob_bytes(self) -> int:
        return sum(lp.numel() * lp.element_size() for lp in self.base_logprobs)

    def _batches(self):
        return torch.split(self.windows, self.batch_size)

    @torch.no_grad()
    def _logits(self, batch: torch.Tensor) -> torch.Tensor:
        """Float32 logits of positions 0..T-2 (those that predict tokens 1..T-1)."""
        return self.model(input_ids=batch, use_cache=False).logits[:, :-1].float()

    @staticmethod
    def _nll(logprobs: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        return -logprobs.gather(-1, batch[:, 1:, None]).squeeze(-1).double()

    @torch.no_grad()
    def evaluate(self, types) -> EvalResult:
        """PPL and KLD (vs the base model) of the allocation `types`: a GGUF type or None per layer."""
        start = time.perf_counter()
        self.cache.apply(types)
        try:
            nll = kld = 0.0
            for base_lp, batch in zip(self.base_logprobs, self._batches()):
                lp = torch.log_softmax(self._logits(batch), dim=-1)
                nll += float(self._nll(lp, batch).sum())
                for base_row, row in zip(base_lp, lp):  # one window at a time bounds the temporaries
                    kld += float(F.kl_div(row, base_row, reduction="sum", log_target=True))
        finally:
            self.cache.restore()
        return EvalResult(float(np.exp(nll / self.positions)), kld / self.positions, time.perf_counter() - start)

    def evaluate_allocation(self, allocation) -> EvalResult:
        """`evaluate` of a resolved `halo.allocation.Allocation` (its post-fallback types)."""
        names = [c.tensor for c in allocation.choices]
        if names != [layer.gguf_name for layer in self.layers]:
            raise UserError("the allocation does not match the evaluator's layers")
        return self.evaluate([c.actual for c in allocation.choices])


def candidate_types(layers, action_types) -> dict[str, list[QType]]:
    """Per layer, the real types (after llama.cpp's fallback) of the search's action types, de-duplicated."""
    return {layer.gguf_name: list(dict.fromkeys(qtypes.actual_type(qtypes.requested_type(t), layer.in_features)
                                                for t in action_types))
            for layer in layers}


def make_evaluator(model, source, calibration, action_types, eval_samples: int = 8, eval_seq_len: int = 256,
                   seed: int = 0, imatrix: bool = True, scale_fold: bool = False, data: str = "wikitext2",
                   device=None, plan: str = "auto", batch_size: int = 8, progress: bool = True) -> Evaluator:
    """An evaluator on `eval_samples` windows of `eval_seq_len` tokens from the evaluation part of `data`.

    The windows come from `calibration.data.evaluation_windows` (the last 20 % of the text's tokens,
    disjoint from every calibration window), tokenized by the model's own tokenizer, BOS first.
    `scale_fold` folds `model` IN PLACE (as the export does) and quantizes with the folded imatrix;
    `imatrix` uses the calibration's importance matrix as `halo export` does.
    """
    from calibration.data import bos_id, evaluation_windows, load_text, tokenize
    from calibration.layers import layer_table
    from calibration.models import load_tokenizer
    from halo.fold import fold_model
    from halo.imatrix import layer_imatrix

    if (imatrix or scale_fold) and calibration is None:
        raise UserError("imatrix and scale folding need the model's calibration")
    layers = layer_table(model, source.gguf_arch)
    if calibration is not None:
        calibration.check_layers(layers)
    tokenizer = load_tokenizer(source)
    tokens = tokenize(tokenizer, load_text(data).text)
    windows = evaluation_windows(tokens, eval_samples, eval_seq_len, seed, bos_id(tokenizer))
    scales = fold_model(model, calibration) if scale_fold else None
    table = {layer.gguf_name: layer_imatrix(calibration, layer, scales) for layer in layers} if imatrix else None
    return Evaluator(model, layers, candidate_types(layers, action_types), windows, table, device, plan,
                     batch_size, progress)
