"""The metadata (key/value fields and tokenizer) of an output GGUF file.

* From a GGUF source every field is copied unchanged, byte for byte, with gguf-py; only the fields
  that describe the *tensors* are left out, because the writer sets them from what it writes:
  `general.file_type`, `general.quantization_version`, `quantize.*` (the source's imatrix notes)
  and `split.*`.
* From a Hugging Face directory (config.json + tokenizer files) the architecture hparams are
  written as llama.cpp's converter writes them, and the tokenizer with gguf-py's `gguf.vocab`.

Limitation: a BPE tokenizer's `tokenizer.ggml.pre` (llama.cpp's pre-tokenizer regex set) is
inferred from the pre_tokenizer described in tokenizer.json for a few known forms: plain GPT-2
byte-level -> "gpt-2", digits-then-byte-level (SmolLM/SmolLM2) -> "smollm", the Llama-3 and
Qwen2 split regexes -> "llama-bpe" / "qwen2".  Anything else gets "default" and a warning:
llama.cpp then loads the file but may split some text (numbers, punctuation) differently from
transformers.  Llama-3 style rope scaling (a rope_freqs tensor) is refused from a directory, and
so are Gemma 3 configs whose attention scale or sliding-layer pattern llama.cpp cannot express.
The SentencePiece path (tokenizer.model, e.g. Gemma from a directory) uses gguf-py's
SentencePieceVocab as is and is not covered by tests here.
"""

import json
import logging
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from ramputils.errors import UserError

WRITER_KEYS = ("general.file_type", "general.quantization_version")   # set by halo.writer
DROPPED_PREFIXES = ("GGUF.", "quantize.", "split.")                    # header / source-specific
ARCH_NAMES = {"llama": "llama", "mistral": "llama", "qwen2": "qwen2", "gemma3": "gemma3", "gemma3_text": "gemma3"}

# Split regexes of known tokenizer.json pre_tokenizers (as llama-vocab.cpp quotes them) -> pre name.
_LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                 r"|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")


@dataclass
class Metadata:
    """Key/value fields of a GGUF file, in order, without general.architecture (given apart)."""

    arch: str                                   # general.architecture, e.g. "llama"
    kv: dict[str, Any] = field(default_factory=dict)   # key -> gguf.GGUFValue(value, type, sub_type)

    def add_to(self, writer) -> None:
        """Put every field into a `gguf.GGUFWriter` (created with the same arch)."""
        for key, value in self.kv.items():
            writer.add_key_value(key, value.value, value.type, value.sub_type)

    def get(self, key: str):
        value = self.kv.get(key)
        return None if value is None else value.value


def _collector(arch: str):
    """A GGUFWriter with no file: gguf-py's add_* helpers fill its key/value table."""
    from gguf import GGUFWriter

    return GGUFWriter(None, arch)


def _finish(collector, extra: dict | None) -> Metadata:
    add_extra(collector, extra or {})
    kv = {k: v for k, v in collector.kv_data[0].items() if k != "general.architecture"}
    return Metadata(arch=collector.arch, kv=kv)


def add_extra(writer, extra: dict) -> None:
    """Caller-given fields (e.g. "halo.allocation": JSON string); dicts are stored as JSON text."""
    from gguf import GGUFValueType as T

    for key, value in extra.items():
        if isinstance(value, dict):
            value = json.dumps(value, sort_keys=True)
        if isinstance(value, bool):
            writer.add_key_value(key, value, T.BOOL)
        elif isinstance(value, int):
            writer.add_key_value(key, value, T.INT64)
        elif isinstance(value, float):
            writer.add_key_value(key, value, T.FLOAT32)
        elif isinstance(value, str):
            writer.add_key_value(key, value, T.STRING)
        elif isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
            writer.add_key_value(key, list(value), T.ARRAY, T.STRING)
        else:
            raise UserError(f"metadata field {key!r}: unsupported value {type(value).__name__}")


# ---------------------------------------------------------------------------- from a GGUF source


def _field_value(reader_field):
    """A GGUFReader field's value as GGUFWriter takes it back (strings kept as raw bytes)."""
    from gguf import GGUFValueType as T

    types = reader_field.types
    if types[0] == T.STRING:
        return bytes(reader_field.parts[reader_field.data[0]]), T.STRING, None
    if types[0] == T.ARRAY:
        if types[-1] == T.STRING:
            return [bytes(reader_field.parts[i]) for i in reader_field.data], T.ARRAY, T.STRING
        if len(types) != 2:
            raise UserError(f"GGUF field {reader_field.name}: nested arrays are not supported")
        return reader_field.contents(), T.ARRAY, types[1]
    return reader_field.contents(), types[0], None


def is_copied(key: str) -> bool:
    """Whether a source GGUF field goes unchanged into the output file."""
    return key not in WRITER_KEYS and not key.startswith(DROPPED_PREFIXES) and key != "general.architecture"


def open_reader(path):
    """A gguf.GGUFReader for `path`, reused while the file is unchanged (parsing a vocabulary takes seconds)."""
    stat = Path(path).stat()
    return _cached_reader(str(Path(path).resolve()), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=2)
def _cached_reader(path: str, _mtime_ns: int, _size: int):
    from gguf import GGUFReader

    try:
        return GGUFReader(path)
    except Exception as exc:  # gguf-py raises ValueError/struct errors on damaged files
        raise UserError(f"{path} is not a readable GGUF file ({exc.__class__.__name__}: {exc})") from None


def metadata_from_gguf(path, extra: dict | None = None) -> Metadata:
    """Every field of the GGUF file at `path`, unchanged, except those the writer sets."""
    reader = open_reader(path)
    collector = _collector(reader.get_field("general.architecture").contents())
    for key, reader_field in reader.fields.items():
        if is_copied(key):
            value, vtype, sub_type = _field_value(reader_field)
            collector.add_key_value(key, value, vtype, sub_type)
    return _finish(collector, extra)


# ------------------------------------------------------------------ from a Hugging Face directory


def _read_config(directory: Path) -> dict:
    try:
        config = json.loads((directory / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"{directory / 'config.json'} is missing or not valid JSON ({exc})") from None
    if "text_config" in config:   # multimodal wrappers: the text model's fields count
        config = {**config, **config["text_config"]}
    return config


def _rope(config: dict) -> tuple[dict, dict]:
    """(full-attention rope parameters, sliding-window ones) from old or new transformers configs."""
    params = dict(config.get("rope_parameters") or config.get("rope_scaling") or {})
    full = dict(params.get("full_attention", params))
    full.setdefault("rope_theta", config.get("rope_theta"))
    full.setdefault("rope_type", full.get("type"))
    sliding = dict(params.get("sliding_attention", {}))
    if "rope_theta" not in sliding and config.get("rope_local_base_freq") is not None:
        sliding["rope_theta"] = config["rope_local_base_freq"]
    return full, sliding


def _add_rope(w, config: dict) -> None:
    from gguf import RopeScalingType

    full, sliding = _rope(config)
    if full.get("rope_theta") is not None:
        w.add_rope_freq_base(float(full["rope_theta"]))
    if sliding.get("rope_theta") is not None:
        w.add_rope_freq_base_swa(float(sliding["rope_theta"]))
    kind, factor = full.get("rope_type"), full.get("factor")
    if kind in (None, "default"):
        return
    if kind == "linear" and factor is not None:
        w.add_rope_scaling_type(RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(float(factor))
    elif kind == "yarn" and factor is not None:
        w.add_rope_scaling_type(RopeScalingType.YARN)
        w.add_rope_scaling_factor(float(factor))
        w.add_rope_scaling_orig_ctx_len(int(full["original_max_position_embeddings"]))
    else:
        raise UserError(f"rope scaling {kind!r} is not supported from a Hugging Face directory; "
                        "convert the model with llama.cpp's convert_hf_to_gguf.py and pass the GGUF file")


def _add_hparams(w, config: dict, arch: str, name: str) -> None:
    """Architecture hparams, as llama.cpp's convert_hf_to_gguf.py writes them for llama/qwen2/gemma3."""
    w.add_type("model")
    w.add_name(name)
    hidden, n_head = config["hidden_size"], config["num_attention_heads"]
    head_dim = config.get("head_dim") or hidden // n_head
    w.add_block_count(config["num_hidden_layers"])
    w.add_context_length(config.get("max_position_embeddings", 131072 if arch == "gemma3" else 4096))
    w.add_embedding_length(hidden)
    w.add_feed_forward_length(config["intermediate_size"])
    w.add_head_count(n_head)
    w.add_head_count_kv(config.get("num_key_value_heads") or n_head)
    w.add_layer_norm_rms_eps(float(config.get("rms_norm_eps", 1e-6)))
    _add_rope(w, config)
    if arch == "gemma3" or head_dim != hidden // n_head:
        w.add_key_length(head_dim)
        w.add_value_length(head_dim)
    if arch == "llama":
        w.add_vocab_size(config["vocab_size"])
        w.add_rope_dimension_count(head_dim)
    if arch == "gemma3":
        _check_gemma3_fixed_hparams(config, head_dim)
        if config.get("final_logit_softcapping"):
            w.add_final_logit_softcapping(float(config["final_logit_softcapping"]))
        if config.get("sliding_window") and config.get("sliding_window_pattern") != 1:
            w.add_sliding_window(config["sliding_window"])


def _check_gemma3_fixed_hparams(config: dict, head_dim: int) -> None:
    """llama.cpp hard-codes two Gemma 3 choices (src/models/gemma3.cpp); refuse configs that differ."""
    n_layers, hidden, n_head = config["num_hidden_layers"], config["hidden_size"], config["num_attention_heads"]
    scalar = hidden // n_head if n_layers == 62 else head_dim   # llama.cpp: 27B uses hidden / heads
    if config.get("query_pre_attn_scalar", scalar) != scalar:
        raise UserError(f"gemma3 query_pre_attn_scalar {config['query_pre_attn_scalar']} != {scalar}: "
                        "llama.cpp would scale attention differently")
    layer_types = config.get("layer_types")
    if layer_types and [t == "sliding_attention" for t in layer_types] != [i % 6 < 5 for i in range(n_layers)]:
        raise UserError("gemma3 layer_types differ from llama.cpp's fixed pattern (5 sliding, 1 full)")


def bpe_pre_name(tokenizer_json: dict) -> str:
    """llama.cpp's pre-tokenizer name for a byte-level BPE tokenizer.json ("default" + warning if unknown)."""
    pre = tokenizer_json.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    kinds = [s.get("type") for s in steps]
    if kinds == ["ByteLevel"] and steps[0].get("use_regex", True):
        return "gpt-2"
    if kinds == ["Digits", "ByteLevel"] and steps[0].get("individual_digits") and steps[1].get("use_regex", True):
        return "smollm"
    if kinds == ["Split", "ByteLevel"] and not steps[1].get("use_regex", True):
        regex = (steps[0].get("pattern") or {}).get("Regex")
        if regex == _LLAMA3_SPLIT:
            return "llama-bpe"
        if regex == _QWEN2_SPLIT:
            return "qwen2"
    warnings.warn(f"unknown BPE pre-tokenizer {kinds}: writing tokenizer.ggml.pre='default'; llama.cpp may "
                  "split some text differently from transformers", stacklevel=2)
    return "default"


def _bpe_tokens(directory: Path, tokenizer_json: dict, n_vocab: int):
    """(tokens, types) of a GPT-2 style BPE vocabulary, added tokens typed as convert does, padded to n_vocab."""
    import gguf

    vocab = gguf.vocab.BpeVocab(directory)
    tokens, types = [], []
    for text, _score, toktype in vocab.all_tokens():
        tokens.append(text.decode("utf-8") if isinstance(text, bytes) else text)
        types.append(int(toktype))
    index = {text: i for i, text in enumerate(tokens)}
    for added in tokenizer_json.get("added_tokens", []):
        i = index.get(added["content"])
        if i is not None:
            special = added.get("special") or added["content"].startswith("<|") and added["content"].endswith("|>")
            types[i] = int(gguf.TokenType.CONTROL if special else gguf.TokenType.USER_DEFINED)
    return _pad(tokens, types, n_vocab)


def _pad(tokens: list, types: list, n_vocab: int):
    import gguf

    if len(tokens) > n_vocab:
        raise UserError(f"the tokenizer has {len(tokens)} tokens but the model's vocab_size is {n_vocab}")
    for i in range(len(tokens), n_vocab):
        tokens.append(f"[PAD{i}]")
        types.append(int(gguf.TokenType.UNUSED))
    return tokens, types


def _add_special_flags(w, directory: Path) -> None:
    """add_bos/add_eos as the transformers tokenizer really behaves on plain text."""
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    tok = AutoTokenizer.from_pretrained(str(directory))
    ids = tok("a")["input_ids"]
    for key in ("tokenizer.ggml.add_bos_token", "tokenizer.ggml.add_eos_token"):
        w.kv_data[0].pop(key, None)   # replace SpecialVocab's guess without a duplicate warning
    w.add_add_bos_token(tok.bos_token_id is not None and ids[0] == tok.bos_token_id)
    w.add_add_eos_token(tok.eos_token_id is not None and ids[-1] == tok.eos_token_id)


def _add_tokenizer(w, directory: Path, n_vocab: int, arch: str) -> None:
    import gguf

    logging.getLogger("gguf.vocab").setLevel(logging.WARNING)
    tokenizer_json = directory / "tokenizer.json"
    tj = json.loads(tokenizer_json.read_text(encoding="utf-8")) if tokenizer_json.is_file() else {}
    model = tj.get("model", {})
    if (directory / "tokenizer.model").is_file() or (model.get("type") == "BPE" and model.get("byte_fallback")):
        vocab = (gguf.vocab.SentencePieceVocab(directory) if (directory / "tokenizer.model").is_file()
                 else gguf.vocab.LlamaHfVocab(directory))
        tokens, scores, types = [], [], []
        for text, score, toktype in vocab.all_tokens():
            tokens.append(text)
            scores.append(float(score))
            types.append(int(toktype))
        scores += [-1000.0] * (n_vocab - len(tokens))
        tokens, types = _pad(tokens, types, n_vocab)
        w.add_tokenizer_model("llama")
        w.add_tokenizer_pre("default")
        w.add_token_list(tokens)
        w.add_token_scores(scores)
        w.add_token_types(types)
        if arch == "gemma3":
            w.add_add_space_prefix(False)
        gguf.SpecialVocab(directory, load_merges=False, n_vocab=n_vocab).add_to_gguf(w, quiet=True)
    elif model.get("type") == "BPE":
        tokens, types = _bpe_tokens(directory, tj, n_vocab)
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre(bpe_pre_name(tj))
        w.add_token_list(tokens)
        w.add_token_types(types)
        gguf.SpecialVocab(directory, load_merges=True, n_vocab=n_vocab).add_to_gguf(w, quiet=True)
    else:
        raise UserError(f"{directory}: no supported tokenizer (tokenizer.model, or a BPE tokenizer.json)")
    _add_special_flags(w, directory)


def metadata_from_hf(directory, extra: dict | None = None) -> Metadata:
    """Hparams and tokenizer of a Hugging Face model directory, for llama.cpp."""
    directory = Path(directory)
    config = _read_config(directory)
    arch = ARCH_NAMES.get(config.get("model_type"))
    if arch is None:
        raise UserError(f"unsupported architecture {config.get('model_type')!r} in {directory}")
    w = _collector(arch)
    _add_hparams(w, config, arch, directory.name)
    _add_tokenizer(w, directory, config["vocab_size"], arch)
    return _finish(w, extra)


def source_metadata(source, extra: dict | None = None) -> Metadata:
    """Metadata for a `calibration.models.ModelSource` (GGUF file or Hugging Face directory)."""
    if source.kind == "gguf":
        return metadata_from_gguf(source.path, extra)
    return metadata_from_hf(source.path, extra)
