"""Measuring a GGUF file in llama.cpp: perplexity, KL divergence against a base file, multiple-choice
accuracy, speed and size.

Every number comes from llama.cpp through llama-cpp-python.  `Model` loads a file with
`llama_cpp.Llama` and decodes with the low-level batch API, so each call asks llama.cpp for the
logits of exactly the positions it scores (as `llama-perplexity` does) and keeps nothing else.
Flash attention is on, as in llama.cpp's own tools, whose default `-fa auto` turns it on for the
CPU: with it the perplexity of the default model matches `llama-perplexity` of the same llama.cpp to
the printed digits (without it, the last digits differ by ~0.1%).
"""

import ctypes
import os
from pathlib import Path

import numpy as np

from ramputils.errors import UserError

from ..llama_build import check as check_llama_build


def read_gguf(path) -> "gguf.GGUFReader":  # noqa: F821
    """gguf-py's reader for `path`; a missing or unreadable file is a one-line UserError."""
    from gguf import GGUFReader

    path = Path(path)
    if not path.is_file():
        raise UserError(f"GGUF file not found: {path}")
    try:
        return GGUFReader(path)
    except Exception as exc:  # gguf-py raises ValueError/struct/IndexError on damaged files
        raise UserError(f"{path} is not a readable GGUF file ({exc.__class__.__name__}: {exc})") from None


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-probabilities in float64 (llama.cpp sums the exponentials in double too)."""
    x = logits.astype(np.float64)
    x -= x.max(axis=1, keepdims=True)
    x -= np.log(np.exp(x).sum(axis=1, keepdims=True))
    return x


class Model:
    """A GGUF file in one llama.cpp context (one sequence) with a reusable decode batch."""

    def __init__(self, path, n_ctx: int = 512, threads: int | None = None, n_batch: int = 512, gpu_layers: int = 0):
        """`gpu_layers`: llama.cpp's n_gpu_layers (-1 all), as `backend.gpu_layers` resolves a user's request."""
        import llama_cpp

        from .backend import describe

        check_llama_build()
        read_gguf(path)
        threads = threads or os.cpu_count()
        n_batch = min(n_batch, n_ctx)
        try:
            self.llm = llama_cpp.Llama(str(path), n_ctx=n_ctx, n_batch=n_batch, n_ubatch=n_batch,
                                       n_threads=threads, n_threads_batch=threads, logits_all=False,
                                       flash_attn=True, n_gpu_layers=gpu_layers, verbose=False)
        except (ValueError, RuntimeError) as exc:
            raise UserError(f"llama.cpp cannot load {path}: {exc}") from None
        self._lib = llama_cpp
        vocab = llama_cpp.llama_model_get_vocab(self.llm.model)
        self.path, self.n_ctx, self.n_batch, self.threads = Path(path), n_ctx, n_batch, threads
        self.n_vocab = self.llm.n_vocab()
        self.add_bos = bool(llama_cpp.llama_vocab_get_add_bos(vocab))
        self.bos = self.llm.token_bos()
        self.backend = describe(gpu_layers, llama_cpp.llama_model_n_layer(self.llm.model))
        self._batch = llama_cpp.llama_batch_init(n_batch, 0, 1)

    def tokenize(self, text: str) -> np.ndarray:
        """Tokens of `text` as llama.cpp's `common_tokenize(ctx, text, true)`: BOS when the model adds it."""
        return np.asarray(self.llm.tokenize(text.encode("utf-8"), add_bos=True, special=False), dtype=np.int32)

    def forget(self, pos: int = 0) -> None:
        """Drop the KV cache from position `pos` on."""
        lib = self._lib
        lib.llama_memory_seq_rm(lib.llama_get_memory(self.llm.ctx), -1, pos, -1)

    def decode(self, tokens, pos0: int = 0, outputs=None) -> np.ndarray:
        """Decode `tokens` at positions pos0.. and return the logits of the rows flagged in `outputs`
        (a bool per token; default: the last token only) as float32 (n_outputs, n_vocab)."""
        tokens = np.asarray(tokens, dtype=np.int32)
        if outputs is None:
            outputs = np.zeros(len(tokens), dtype=bool)
            outputs[-1] = True
        outputs = np.asarray(outputs, dtype=bool)
        rows = []
        batch = self._batch
        for lo in range(0, len(tokens), self.n_batch):
            hi = min(lo + self.n_batch, len(tokens))
            for k in range(hi - lo):
                batch.token[k] = int(tokens[lo + k])
                batch.pos[k] = pos0 + lo + k
                batch.n_seq_id[k] = 1
                batch.seq_id[k][0] = 0
                batch.logits[k] = int(outputs[lo + k])
            batch.n_tokens = hi - lo
            code = self._lib.llama_decode(self.llm.ctx, batch)
            if code != 0:
                raise RuntimeError(f"llama_decode returned {code}")
            n_out = int(outputs[lo:hi].sum())
            if n_out:
                pointer = self._lib.llama_get_logits(self.llm.ctx)
                flat = np.ctypeslib.as_array(ctypes.cast(pointer, ctypes.POINTER(ctypes.c_float)),
                                             shape=(n_out * self.n_vocab,))
                rows.append(flat.reshape(n_out, self.n_vocab).copy())
        if not rows:
            return np.zeros((0, self.n_vocab), dtype=np.float32)
        return rows[0] if len(rows) == 1 else np.concatenate(rows)

    def close(self) -> None:
        if self._batch is not None:
            self._lib.llama_batch_free(self._batch)
            self._batch = None
        self.llm.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
