"""Model tensors in llama.cpp's layout: GGUF names, GGUF order and the transforms between the two worlds.

The search works on the transformers model; the output file must hold what llama.cpp's own
converter (convert_hf_to_gguf.py) would have written.  Two transforms separate the layouts:

* llama (and mistral, which converts to llama): the converter permutes the rows of `attn_q` and
  `attn_k` (weights and biases) for llama.cpp's rope layout; transformers' GGUF loader
  (`LlamaTensorProcessor`) un-permutes them.  `to_gguf_layout` permutes, `from_gguf_layout` undoes it.
* gemma3: the converter stores every `*norm.weight` as (1 + w) because Gemma's RMSNorm multiplies by
  (1 + w); transformers' loader (`Gemma2TensorProcessor`) subtracts 1 again.

qwen2 needs no transform (NEOX rope); its q/k/v biases are plain tensors.  Tied embeddings mean
no `output.weight` in the file: llama.cpp then reuses `token_embd.weight`.
"""

import numpy as np

from calibration.models import SUPPORTED_ARCHITECTURES
from ramputils.errors import UserError

PERMUTED_QK = {"LLAMA"}       # gguf-py MODEL_ARCH names whose q/k rows are permuted for rope
NORM_PLUS_ONE = {"GEMMA3"}    # ... whose norm weights are stored as 1 + w


def gguf_arch_name(arch: str) -> str:
    """The gguf-py MODEL_ARCH member name ("LLAMA") for an arch given either way ("llama", "gemma3_text", "LLAMA")."""
    if arch in SUPPORTED_ARCHITECTURES:
        return SUPPORTED_ARCHITECTURES[arch]
    if arch.upper() in set(SUPPORTED_ARCHITECTURES.values()):
        return arch.upper()
    raise UserError(f"unsupported architecture {arch!r} for GGUF export; supported: llama, mistral, qwen2, gemma3")


def _heads(config) -> tuple[int, int]:
    get = config.get if isinstance(config, dict) else lambda key, default=None: getattr(config, key, default)
    n_head = get("num_attention_heads")
    n_kv = get("num_key_value_heads") or n_head
    if not n_head:
        raise UserError("the model config has no num_attention_heads: cannot lay out attn_q/attn_k")
    return int(n_head), int(n_kv)


def _qk_heads(gguf_name: str, arch: str, config) -> int | None:
    """Heads to (un)permute over for a llama-family attn_q / attn_k tensor, else None."""
    if gguf_arch_name(arch) not in PERMUTED_QK:
        return None
    n_head, n_kv = _heads(config)
    if ".attn_q." in gguf_name:
        return n_head
    if ".attn_k." in gguf_name:
        return n_kv
    return None


def _is_shifted_norm(gguf_name: str, arch: str) -> bool:
    return gguf_arch_name(arch) in NORM_PLUS_ONE and gguf_name.endswith("norm.weight")


def _permute_rows(array: np.ndarray, heads: int, inverse: bool) -> np.ndarray:
    """llama.cpp's rope permutation of rows: per head, (2, half) -> (half, 2); `inverse` goes back."""
    half = array.shape[0] // heads // 2
    if heads * 2 * half != array.shape[0]:
        raise UserError(f"cannot permute {array.shape[0]} rows over {heads} heads")
    grouped = (heads, half, 2) if inverse else (heads, 2, half)
    return array.reshape(*grouped, *array.shape[1:]).swapaxes(1, 2).reshape(array.shape)


def rows_to_gguf_order(gguf_name: str, rows: np.ndarray, arch: str, config) -> np.ndarray:
    """Rows of any dtype (e.g. quantized bytes, one row per output feature) in llama.cpp's order."""
    heads = _qk_heads(gguf_name, arch, config)
    return rows if heads is None else np.ascontiguousarray(_permute_rows(rows, heads, inverse=False))


def to_gguf_layout(gguf_name: str, array: np.ndarray, arch: str, config) -> np.ndarray:
    """One tensor from transformers' layout (rows = out features) to llama.cpp's, as float32."""
    array = np.asarray(array, dtype=np.float32)
    heads = _qk_heads(gguf_name, arch, config)
    if heads is not None:
        array = _permute_rows(array, heads, inverse=False)
    if _is_shifted_norm(gguf_name, arch):
        array = array + np.float32(1.0)
    return np.ascontiguousarray(array)


def from_gguf_layout(gguf_name: str, array: np.ndarray, arch: str, config) -> np.ndarray:
    """The inverse of `to_gguf_layout`: a tensor as read from a GGUF file, in transformers' layout."""
    array = np.asarray(array, dtype=np.float32)
    heads = _qk_heads(gguf_name, arch, config)
    if heads is not None:
        array = _permute_rows(array, heads, inverse=True)
    if _is_shifted_norm(gguf_name, arch):
        array = array - np.float32(1.0)
    return np.ascontiguousarray(array)


def _model_arch(model, source) -> str:
    if source is not None:
        return source.gguf_arch
    return gguf_arch_name(model.config.model_type)


def _tied_head_name(model) -> str | None:
    """The state-dict name of the output head when it shares the token embeddings (not written)."""
    head = model.get_output_embeddings()
    if head is None or head.weight is not model.get_input_embeddings().weight:
        return None
    return next(name for name, module in model.named_modules() if module is head) + ".weight"


def _order_key(item) -> tuple[int, int]:
    name = item[0]
    if name.startswith("token_embd."):
        return (0, 0)
    if name.startswith("blk."):
        return (1, int(name.split(".")[1]))
    return (2, 0)  # output_norm, then output (kept in model order by the stable sort)


def gguf_name_of(name_map, hf_name: str) -> str | None:
    """The GGUF name of a transformers parameter, or None when gguf-py does not map it."""
    for candidate in (hf_name, hf_name.replace("model.language_model.", "model.")):
        mapped = name_map.get_name(candidate, try_suffixes=(".weight", ".bias"))
        if mapped:
            return mapped
    return None


def gguf_tensors(model, source=None) -> dict[str, np.ndarray]:
    """Every tensor of `model` in llama.cpp's layout, names and file order (float32 arrays).

    Order: token_embd, then block by block (in model order inside a block), then output_norm and
    output (absent when the embeddings are tied).  `source` (a `ModelSource`) gives the
    architecture; for a GGUF source, tensors the transformers model does not hold (e.g.
    `rope_freqs.weight` of llama-3 rope scaling) are copied, dequantized, from the source file.
    """
    import gguf

    arch = _model_arch(model, source)
    n_blocks = model.config.num_hidden_layers
    name_map = gguf.get_tensor_name_map(getattr(gguf.MODEL_ARCH, arch), n_blocks)
    skip = _tied_head_name(model)
    out = []
    for hf_name, tensor in model.state_dict().items():
        if hf_name == skip:
            continue
        gguf_name = gguf_name_of(name_map, hf_name)
        if gguf_name is None:
            raise UserError(f"no GGUF tensor name for {hf_name}: gguf-py does not map it for {arch}")
        array = tensor.detach().to("cpu").float().numpy()
        out.append((gguf_name, to_gguf_layout(gguf_name, array, arch, model.config)))
    out.sort(key=_order_key)
    tensors = dict(out)
    if len(tensors) != len(out):
        raise UserError(f"two parameters of {type(model).__name__} map to the same GGUF tensor name")
    if source is not None and source.kind == "gguf":
        tensors.update(_extra_source_tensors(source.path, tensors))
    return tensors


def _extra_source_tensors(path, have: dict) -> dict[str, np.ndarray]:
    """Tensors of a GGUF file that the model does not hold (besides a tied output)."""
    from gguf.quants import dequantize

    from .gguf_meta import open_reader

    reader = open_reader(path)
    return {t.name: np.ascontiguousarray(dequantize(t.data, t.tensor_type), dtype=np.float32)
            for t in reader.tensors if t.name not in have and t.name != "output.weight"}
