"""The base model's transformer-block outputs, replayed when an allocation leaves the first blocks untouched.

An evaluation whose quantized layers all sit in block k or later computes blocks 0..k-1 exactly as the base pass
did: same weights, same windows, same batches.  `BlockPrefix` records each block's output during the base pass
and, for such an evaluation, makes blocks 0..k-1 return their recorded outputs instead of computing them.  The
layer-by-layer sensitivities (`ramp.sensitivity.measured`: one layer quantized at a time; the noise table; the
additivity benchmark) then skip half the model on average, with bit-identical scores: the replayed tensors are
the ones the skipped blocks computed.

Memory: one (windows, tokens, hidden) tensor per block, 70 MB for SmolLM2-135M on 4 x 256 tokens; the recording is
skipped when it would exceed `MAX_BYTES` or the model is placed by accelerate (its hooks move tensors).
"""

import torch

from calibration.layers import decoder_blocks

MAX_BYTES = 1 << 30


class BlockPrefix:
    """Records the base pass's block outputs per batch; replays blocks 0..k-1 of batch b when asked to."""

    def __init__(self, model):
        self.blocks = list(decoder_blocks(model))
        self.outputs = []   # per batch: [output of block i]
        self.nbytes = 0

    def record(self, run_batches):
        """Call `run_batches()` (the base pass, one forward per batch in order) with each block's output saved;
        returns what it returns.  Beyond MAX_BYTES the recording is dropped and nothing is replayed later."""
        full = False

        def keep(i):
            def hook(_module, _inputs, output):
                nonlocal full
                assert torch.is_tensor(output), f"block {i} returned {type(output).__name__}, not a tensor"
                full = full or self.nbytes + output.numel() * output.element_size() > MAX_BYTES
                if full:   # stop copying before the memory is spent; the recording is dropped below
                    return
                if i == 0:   # a new batch begins
                    self.outputs.append([])
                self.outputs[-1].append(output.detach().clone())
                self.nbytes += output.numel() * output.element_size()
            return hook

        handles = [block.register_forward_hook(keep(i)) for i, block in enumerate(self.blocks)]
        try:
            result = run_batches()
        finally:
            for handle in handles:
                handle.remove()
        if full or any(len(out) != len(self.blocks) for out in self.outputs):
            self.outputs, self.nbytes = [], 0
        return result

    @property
    def ready(self) -> bool:
        return bool(self.outputs)

    def replay(self, batch: int, first: int):
        """A context in which blocks 0..first-1 return batch `batch`'s recorded outputs without computing
        (every block computes when nothing was recorded)."""
        first = first if self.ready else 0
        return _Replay(self.blocks[:first], self.outputs[batch][:first] if first else [])


class _Replay:
    def __init__(self, blocks, outputs):
        assert len(blocks) == len(outputs), (len(blocks), len(outputs))
        self.blocks, self.outputs = blocks, outputs

    def __enter__(self):
        for block, output in zip(self.blocks, self.outputs):
            block.forward = _recorded(output)   # an instance attribute: nn.Module.__call__ finds it first

    def __exit__(self, *exc):
        for block in self.blocks:
            del block.forward


def _recorded(output: torch.Tensor):
    def forward(*_args, **_kwargs):
        return output.clone()   # a copy: a later block may work in place on its input
    return forward
