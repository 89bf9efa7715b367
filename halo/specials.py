"""Types of the tensors outside the search: token embeddings, output head, norms.

Defaults follow llama.cpp's Q4_K_M choice (`llama_tensor_get_type_impl` in src/llama-quant.cpp of
the bundled version): the output head — or the token embeddings when they double as the head (tied)
— gets Q6_K, or Q8_0 when its rows are not a multiple of 256; untied token embeddings get Q4_K with
the usual fallback.  Norms, biases and every other 1-D tensor stay F32.  The user can override the
embedding and head types.
"""

from halo import qtypes

QType = qtypes.QType


def head_type(in_features: int) -> QType:
    """Q4_K_M's output-head rule: Q6_K, or Q8_0 for rows not divisible by 256."""
    return QType.Q6_K if in_features % 256 == 0 else QType.Q8_0


def special_types(special: list[dict], token_embd: str | None = None, output: str | None = None) -> dict:
    """GGUF type per special tensor name; `special` rows come from `calibration.layers.special_tensors`."""
    types = {}
    for row in special:
        cols = row["shape"][-1]
        acts_as_head = row["role"] == "output" or row.get("tied", False)
        override = output if row["role"] == "output" or (row["tied"] and output and not token_embd) else token_embd
        if override:
            types[row["gguf_name"]] = qtypes.actual_type(qtypes.requested_type(override), cols)
        elif acts_as_head:
            types[row["gguf_name"]] = head_type(cols)
        else:
            types[row["gguf_name"]] = qtypes.actual_type(QType.Q4_K, cols)
    return types
