"""A transformers model behind the interface of `halo.measure.Model`, so HALO's perplexity (llama-perplexity's
windows: ctx 512, second half of each window scored) and task scoring measure a torch model, e.g. one with
simulated bitsandbytes weights, exactly as they measure a GGUF file in llama.cpp.

No KV cache: `decode` runs the whole sequence kept so far (at most n_ctx tokens) and returns the rows asked for.
Tokens come from the model's own tokenizer with BOS first when it adds one (llama.cpp's tokenizer may split a
few strings differently, so compare torch rows with torch rows).
"""

import numpy as np
import torch
from torch.nn.utils import parametrize

from calibration.data import bos_id


class TorchLM:
    def __init__(self, model, tokenizer, n_ctx: int = 512):
        self.model, self.tokenizer, self.n_ctx = model.eval(), tokenizer, n_ctx
        self.bos = bos_id(tokenizer)
        self.add_bos = self.bos is not None
        self.n_vocab = int(model.get_output_embeddings().weight.shape[0])
        self.history: list[int] = []
        self._cache = parametrize.cached()

    def tokenize(self, text: str) -> np.ndarray:
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return np.asarray(([self.bos] if self.add_bos else []) + list(ids), dtype=np.int32)

    def forget(self, pos: int = 0) -> None:
        del self.history[pos:]

    @torch.no_grad()
    def decode(self, tokens, pos0: int = 0, outputs=None) -> np.ndarray:
        tokens = [int(t) for t in np.asarray(tokens)]
        assert pos0 == len(self.history), (pos0, len(self.history))
        if outputs is None:
            outputs = np.zeros(len(tokens), dtype=bool)
            outputs[-1] = True
        self.history += tokens
        if len(self.history) > self.n_ctx:
            raise ValueError(f"{len(self.history)} tokens exceed the context of {self.n_ctx}")
        logits = self.model(input_ids=torch.tensor([self.history])).logits[0, pos0:]
        return logits[torch.as_tensor(np.asarray(outputs, dtype=bool))].float().numpy()

    def __enter__(self):
        self._cache.__enter__()  # quantize parametrized weights once for the whole measurement
        return self

    def __exit__(self, *exc):
        self._cache.__exit__(*exc)


def bench_torch(model, tokenizer, max_chunks: int | None = 40, tasks=(), limit: int | None = None,
                n_ctx: int = 512, progress: bool = True) -> dict:
    """WikiText-2 raw test perplexity (llama-perplexity's windows) and task accuracy of a torch model."""
    from halo.measure.perplexity import model_perplexity
    from halo.measure.tasks import TASK_CONTEXT, check_tasks, evaluate

    result = {}
    with TorchLM(model, tokenizer, n_ctx) as lm:
        result["perplexity"] = model_perplexity(lm, max_chunks=max_chunks, progress=progress,
                                                desc="perplexity (torch)")
    with TorchLM(model, tokenizer, TASK_CONTEXT) as lm:
        result["tasks"] = {name: evaluate(lm, name, limit, progress) for name in check_tasks(tasks)}
    return result
