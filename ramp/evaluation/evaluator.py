"""The search's evaluator: perplexity and KL divergence of an allocation, from exactly the exported weights.

`Evaluator.evaluate(types)` swaps the cached weights of `types` (one real GGUF type per layer, or None
for the base weights; see `ramp.evaluation.weight_cache`) into the model, runs the forward passes over the
evaluation windows (in batches of `batch_size` windows, 8 by default: one pass for the default 4 windows) and
puts the base weights back.  Scoring, for N windows of T tokens:

* PPL = exp(mean NLL) over every position 1..T-1 of every window (the token at t is predicted from
  tokens 0..t-1), N * (T - 1) predictions; position 0 (BOS) is never predicted.
* KLD = mean over the same positions of KL(base || quantized) = sum_v p_v (log p_v - log q_v).

Scoring works on the difference d = z - z_b of the quantized and base logits of a position, which is
small, rather than on log-probabilities near -10 whose difference cancels in float32.  With p the base
probabilities, dbar = sum_v p_v d_v and x_v = d_v - dbar (so sum_v p_v x_v = 0),

    KL  = log sum_v p_v e^{d_v} - dbar = log1p(S),   S = sum_v p_v (expm1(x_v) - x_v)
    NLL = lse_b + log sum_v p_v e^{d_v} - z_target = lse_b + dbar + log1p(S + sum_v p_v x_v) - z_target

Every term of S is >= 0, so its float32 sum has no cancellation, and an error e in the float32 dbar
moves the KL only by about e * KL; on the default model the KL agrees with float64 to ~1e-4 relative
even at Q8_0 (tests/test_evaluator.py checks it on a tiny model).  The base scores exactly 0.  Per
position this costs a few passes over its V logits and two dot products; no log-softmax is
materialised (on the default model scoring adds ~10 % to the plain forward pass; the elementwise
KL it replaces added ~35 %).
The base logits are stored in float32, (N, T-1, V): 4 * N * (T-1) * V bytes, 200 MB for the
default evaluation (4 windows x 256 tokens, vocabulary 49152), on the model's device; temporaries
stay at a few (T-1, V) tensors because windows are scored one at a time.
"""

import copy
import time
from dataclasses import dataclass

import numpy as np
import torch

from halo import qtypes
from ramputils.errors import UserError

from ..config.search import EVAL_DTYPES, EvalWindows
from .prefix import BlockPrefix
from .weight_cache import WeightCache

QType = qtypes.QType


@dataclass(frozen=True)
class EvalResult:
    ppl: float
    kld: float
    seconds: float
    window_nll: tuple = ()
    """Mean NLL of each window, in window order (for paired comparisons of two allocations)."""
    window_kld: tuple = ()
    """Mean KL divergence of each window, in window order."""


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def check_device(device) -> torch.device:
    """`device` as a torch.device (None: cuda when present); asking for CUDA without one is a UserError."""
    device = torch.device(device) if device is not None else default_device()
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {device}: this torch ({torch.__version__}) sees no CUDA GPU; install a CUDA "
                        "build (RAMP_TORCH=torch bash scripts/setup.sh) or use --device cpu")
    return device


class Evaluator:
    """Scores allocations of `layers` against the base model on fixed token windows."""

    def __init__(self, model, layers, candidates: dict, windows: torch.Tensor, imatrix: dict | None = None,
                 device=None, plan: str = "auto", batch_size: int = 8, progress: bool = True,
                 dtype: str = "float32"):
        """`dtype`: the precision of the forward passes (float32, or bfloat16/float16 for half the memory and
        a faster GPU pass); the candidate weights are quantized from float32 either way and rounded after."""
        windows = torch.as_tensor(windows)
        if windows.ndim != 2 or windows.shape[1] < 2 or windows.dtype != torch.long:
            raise UserError(f"evaluation windows must be a (N, T >= 2) LongTensor, got {tuple(windows.shape)} "
                            f"{windows.dtype}")
        if batch_size < 1:
            raise UserError(f"batch size must be at least 1, got {batch_size}")
        if dtype not in EVAL_DTYPES:
            raise UserError(f"unknown evaluator dtype {dtype!r}; use one of {', '.join(EVAL_DTYPES)}")
        self.dtype, source = dtype, None
        self.streamed = getattr(model, "hf_device_map", None) is not None
        if self.streamed:   # placed (and maybe offloaded) by accelerate
            if dtype != "float32":
                raise UserError("a model streamed from disk (--max-memory) is evaluated in float32; drop --dtype")
            self.device, self.model = torch.device("cpu"), model.eval()   # its hooks move inputs where they run
        else:
            self.device = check_device(device)
            if dtype != "float32":   # keep the float32 weights to quantize from (host memory)
                modules = dict(model.named_modules())
                source = [modules[layer.name].weight.data.detach().to("cpu", torch.float32) for layer in layers]
            self.model = model.to(self.device, getattr(torch, dtype)).eval()
        self.layers = list(layers)
        self.windows = windows.to(self.device)
        self.batch_size = int(batch_size)
        self.cache = WeightCache(self.model, self.layers, candidates, imatrix, plan, progress, source)
        self._score_base()

    def sibling(self, windows: torch.Tensor) -> "Evaluator":
        """An evaluator on other windows that shares this one's model and weight cache (no second copy of the
        candidate weights): a confirmation split."""
        other = copy.copy(self)
        other.windows = torch.as_tensor(windows).to(self.device)
        other._score_base()
        return other

    def _score_base(self) -> None:
        """The base model's logits on the windows, and its perplexity; the blocks' outputs are recorded for
        evaluations that leave the first blocks at the base (`ramp.evaluation.prefix`)."""
        start = time.perf_counter()
        self.prefix = BlockPrefix(self.model)   # never recorded for a streamed model: accelerate's hooks move tensors
        base_pass = lambda: [self._logits(batch) for batch in self._batches()]   # noqa: E731
        self.base_logits = base_pass() if self.streamed else self.prefix.record(base_pass)
        self.base_lse = [torch.logsumexp(logits.double(), -1) for logits in self.base_logits]
        nll = sum(float((lse - logits.gather(-1, batch[:, 1:, None]).squeeze(-1).double()).sum())
                  for logits, lse, batch in zip(self.base_logits, self.base_lse, self._batches()))
        self.base = EvalResult(float(np.exp(nll / self.positions)), 0.0, time.perf_counter() - start)

    @property
    def positions(self) -> int:
        """Predictions scored per evaluation: N * (T - 1)."""
        return self.windows.shape[0] * (self.windows.shape[1] - 1)

    @property
    def base_logit_bytes(self) -> int:
        return sum(z.numel() * z.element_size() for z in self.base_logits)

    def _batches(self):
        return torch.split(self.windows, self.batch_size)

    @torch.no_grad()
    def _logits(self, batch: torch.Tensor) -> torch.Tensor:
        """Float32 logits of positions 0..T-2 (those that predict tokens 1..T-1)."""
        return self.model(input_ids=batch, use_cache=False).logits[:, :-1].float()

    @staticmethod
    def _score(logits: torch.Tensor, base_logits: torch.Tensor, base_lse: torch.Tensor, targets: torch.Tensor):
        """Summed NLL and summed KL(base || quantized) of one window: float32 logits (T-1, V), float64 base lse."""
        d = logits - base_logits
        p = torch.exp(base_logits - base_lse[:, None].float())
        p = p / p.sum(-1, keepdim=True)
        mean = torch.bmm(p[:, None, :], d[:, :, None]).view(-1, 1)
        x = d - mean
        spread = torch.bmm(p[:, None, :], (torch.expm1(x) - x)[:, :, None]).view(-1).double()
        residual = torch.bmm(p[:, None, :], x[:, :, None]).view(-1).double()  # float32 error of the mean
        if not torch.isfinite(spread).all():  # d - mean beyond ~88: only a broken model; score in float64
            log_q = torch.log_softmax(logits.double(), -1)
            log_p = torch.log_softmax(base_logits.double(), -1)
            nll = -log_q.gather(-1, targets[:, None]).view(-1)
            return float(nll.sum()), float((log_p.exp() * (log_p - log_q)).sum())
        kl = torch.log1p(spread)  # = log sum p e^d - sum p d, up to (error of mean) * kl
        log_sum = mean.view(-1).double() + torch.log1p(spread + residual)  # lse_q - lse_b
        nll = base_lse + log_sum - logits.gather(-1, targets[:, None]).view(-1).double()
        return float(nll.sum()), float(kl.sum())

    @torch.no_grad()
    def evaluate(self, types, weights: dict | None = None) -> EvalResult:
        """PPL and KLD (vs the base model) of the allocation `types`: a GGUF type or None per layer; `weights`
        ({layer index: tensor}) puts arbitrary weights into those layers instead (the noise sensitivities)."""
        start = time.perf_counter()
        first = self.first_block(types, weights)
        self.cache.apply(types, weights)
        try:
            sums = []   # (summed NLL, summed KL) of each window
            for b, (batch, base_logits, base_lse) in enumerate(zip(self._batches(), self.base_logits, self.base_lse)):
                # blocks before `first` are the base's: their recorded outputs, not computed again
                with self.prefix.replay(b, first):
                    logits_b = self._logits(batch)
                for window, logits, z_b, lse_b in zip(batch, logits_b, base_logits, base_lse):
                    sums.append(self._score(logits, z_b, lse_b, window[1:]))
        finally:
            self.cache.restore()
        nll, kld, per_window = sum(s[0] for s in sums), sum(s[1] for s in sums), self.windows.shape[1] - 1
        return EvalResult(float(np.exp(nll / self.positions)), kld / self.positions, time.perf_counter() - start,
                          tuple(s[0] / per_window for s in sums), tuple(s[1] / per_window for s in sums))

    def first_block(self, types, weights: dict | None = None) -> int:
        """The first transformer block that `types` or `weights` change (the number of blocks when none does)."""
        touched = [i for i, t in enumerate(types) if t is not None] + list(weights or ())
        n_blocks = len(self.prefix.blocks)
        blocks = [self.layers[i].block for i in touched]
        if any(b is None or b < 0 for b in blocks):   # a layer outside the blocks: nothing can be replayed
            return 0
        return min(blocks, default=n_blocks)

    def evaluate_allocation(self, allocation) -> EvalResult:
        """`evaluate` of a resolved `halo.allocation.Allocation` (its post-fallback types)."""
        return self.evaluate(allocation_types(allocation, self.layers))


def allocation_types(allocation, layers) -> list[QType]:
    """The real (post-fallback) types of a resolved allocation, checked to be one per layer, in order."""
    if [c.tensor for c in allocation.choices] != [layer.gguf_name for layer in layers]:
        raise UserError("the allocation does not match the evaluator's layers")
    return [c.actual for c in allocation.choices]


def candidate_types(layers, action_types) -> dict[str, list[QType]]:
    """Per layer, the real types (after llama.cpp's fallback) of the search's action types, de-duplicated."""
    return {layer.gguf_name: list(dict.fromkeys(qtypes.actual_type(qtypes.requested_type(t), layer.in_features)
                                                for t in action_types))
            for layer in layers}


def make_evaluator(model, source, calibration, action_types, windows: EvalWindows | None = None, seed: int = 0,
                   imatrix: bool = True, scale_fold: bool = False, data: str = "wikitext2", device=None,
                   plan: str = "auto", batch_size: int = 8, progress: bool = True, dtype: str = "float32") -> Evaluator:
    """An evaluator on `windows` (default `EvalWindows()`) from the evaluation part of `data`.

    The windows come from `calibration.data.evaluation_windows` (the last 20 % of the text's tokens,
    disjoint from every calibration window), tokenized by the model's own tokenizer, BOS first.
    `scale_fold` folds `model` IN PLACE (as the export does) and quantizes with the folded imatrix;
    `imatrix` uses the calibration's importance matrix as `halo export` does.
    """
    from calibration.layers import layer_table
    from halo.fold import fold_model
    from halo.imatrix import layer_imatrix

    if (imatrix or scale_fold) and calibration is None:
        raise UserError("imatrix and scale folding need the model's calibration")
    layers = layer_table(model, source.gguf_arch)
    if calibration is not None:
        calibration.check_layers(layers)
    windows = windows or EvalWindows()
    windows = validation_windows(source, windows.samples, windows.seq_len, seed, data=data)
    scales = fold_model(model, calibration) if scale_fold else None
    table = {layer.gguf_name: layer_imatrix(calibration, layer, scales) for layer in layers} if imatrix else None
    return Evaluator(model, layers, candidate_types(layers, action_types), windows, table, device, plan,
                     batch_size, progress, dtype)


def validation_windows(source, count: int, seq_len: int, seed: int, skip: int = 0, data: str = "wikitext2"):
    """`count` windows of the evaluation part of `data` (`calibration.data.evaluation_windows`), tokenized by the
    model's own tokenizer, BOS first; `skip` passes over the seed's first windows (a disjoint split)."""
    from calibration.data import bos_id, evaluation_windows, load_text, tokenize
    from calibration.models import load_tokenizer

    tokenizer = load_tokenizer(source)
    tokens = tokenize(tokenizer, load_text(data).text)
    return evaluation_windows(tokens, count, seq_len, seed, bos_id(tokenizer), skip)
