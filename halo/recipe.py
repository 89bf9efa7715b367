"""`halo recipe`: the same mix for stock `llama-quantize`, as a --tensor-type-file.

Each line is `PATTERN=type` with the pattern anchored (`^blk\\.0\\.attn_q\\.weight$`), because
llama.cpp matches patterns with regex_search and takes the first match: an unanchored `attn_q`
would also match other tensors.  Types are the ones HALO writes (after llama.cpp's row fallback),
so llama.cpp applies no further change.  Token embeddings and output head are pinned the same way.
"""

import re

from halo import qtypes


def pattern(tensor_name: str) -> str:
    return "^" + re.escape(tensor_name) + "$"


def recipe_entries(tensor_types: dict[str, qtypes.QType]) -> list[tuple[str, qtypes.QType]]:
    """(anchored pattern, type) for every tensor in `tensor_types`, in the given order."""
    return [(pattern(name), qtype) for name, qtype in tensor_types.items()]


def recipe_text(tensor_types: dict[str, qtypes.QType]) -> str:
    """The --tensor-type-file contents: one `pattern=type` per line, lower-case type names."""
    return "".join(f"{p}={q.name.lower()}\n" for p, q in recipe_entries(tensor_types))


def usage(recipe_path: str, model_name: str = "model") -> str:
    """The commands a llama.cpp user runs with the recipe (printed by `halo recipe`)."""
    return (f"# rebuild this mix from your own F16/F32 GGUF with stock llama.cpp:\n"
            f"#   llama-quantize --tensor-type-file {recipe_path} {model_name}-f16.gguf {model_name}-ramp.gguf Q4_K_M\n"
            f"#   llama-cli -m {model_name}-ramp.gguf -p 'Hello'\n")
