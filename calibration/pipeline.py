"""The calibration pass: model + text in, one artifact out.

Measure once, reuse many times: an artifact whose inputs (model bytes, text bytes, sample count,
sequence length, seed, dtype, format) are identical is reused instead of recomputed.
"""

import platform
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ramputils import __version__
from ramputils.errors import UserError
from ramputils.hashing import json_sha256

from . import artifact
from .data import bos_id, calibration_windows, load_text, tokenize
from .embedding import FEATURES, layer_embedding, standardisation
from .layers import layer_table, special_tensors
from .memory import load_within
from .models import load_tokenizer, resolve
from .stats import collect


@dataclass
class CalibrationConfig:
    """What a calibration run reads."""

    model: str = "default"       # `default`, a GGUF file, a Hugging Face directory or id
    data: str = "wikitext2"      # `wikitext2` (validation split), a text file, or hf:NAME:SPLIT
    samples: int = 128           # number of calibration sequences
    seq_len: int = 512           # tokens per sequence
    seed: int = 0                # chooses which windows of the text are used
    batch_size: int = 8          # sequences per forward pass (does not change the result)
    device: str | None = None    # cpu / cuda; None picks cuda when present
    dtype: str = "float32"       # dtype the model runs in
    max_memory: int | None = None  # bytes the model may take; None: half the free memory (more: streamed)


def pick_device(requested: str | None) -> str:
    if requested:
        if requested.startswith("cuda") and not torch.cuda.is_available():
            raise UserError(f"--device {requested} asked for, but no CUDA device is available")
        return requested
    return "cuda" if torch.cuda.is_available() else "cpu"


def _versions() -> dict:
    from importlib.metadata import version

    import transformers

    return {"ramp": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "gguf": version("gguf"), "numpy": np.__version__}


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def calibrate(config: CalibrationConfig, out: Path) -> artifact.Calibration:
    """Run (or reuse) the calibration described by `config`; return the artifact written at `out`."""
    out = Path(out)
    if config.samples < 1:
        raise UserError(f"--samples must be at least 1 (got {config.samples})")
    if config.seq_len < 2:
        raise UserError(f"--seq-len must be at least 2 (got {config.seq_len})")
    if config.dtype not in ("float32", "bfloat16", "float16"):
        raise UserError(f"--dtype must be float32, bfloat16 or float16 (got {config.dtype})")
    artifact.check_destination(out)
    source = resolve(config.model)
    text = load_text(config.data)
    device = pick_device(config.device)
    model_sha = source.sha256()
    inputs = {"model_sha256": model_sha, "data_sha256": text.sha256, "samples": config.samples,
              "seq_len": config.seq_len, "seed": config.seed, "dtype": config.dtype,
              "format_version": artifact.FORMAT_VERSION}
    key = json_sha256(inputs)
    found = artifact.existing(out)
    if found is not None and found.manifest.get("key") == key:
        _log(f"reusing the calibration at {out} (same model, data and settings)")
        return found

    started = time.time()
    tokenizer = load_tokenizer(source)
    tokens = tokenize(tokenizer, text.text)
    windows = calibration_windows(tokens, config.samples, config.seq_len, config.seed, bos_id(tokenizer))
    _log(f"loading {source.label} [{source.architecture}] on {device}; its weights are the "
         f"{source.weights_name} model")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".offload-", dir=out.parent) as offload:  # beside the output: big disks
        model = load_within(source, device, config.dtype, Path(offload), config.max_memory, _log)
        layers = layer_table(model, source.gguf_arch)
        batches = list(windows.split(config.batch_size))
        _log(f"{len(layers)} quantizable layers; {config.samples} x {config.seq_len} tokens from {text.label}")
        stats = collect(model, layers, batches, device)
        tensors, rows, n_blocks = _layer_rows(model, layers, stats)
        special = special_tensors(model, source.gguf_arch)
    embedding = np.stack(rows)
    mean, std = standardisation(embedding)
    tensors |= {"embedding": embedding.astype(np.float32), "embedding_mean": mean.astype(np.float32),
                "embedding_std": std.astype(np.float32)}


    manifest = {
        "key": key,
        "inputs": inputs,
        "model": {"spec": source.spec, "kind": source.kind, "path": str(source.path), "sha256": model_sha,
                  "architecture": source.architecture, "gguf_arch": source.gguf_arch, "n_blocks": n_blocks,
                  "weights": source.weights_name, "config": _small_config(model)},
        "layers": [layer.to_dict() for layer in layers],
        "special": special,
        "data": {"source": text.label, "sha256": text.sha256, "tokens": int(len(tokens)),
                 "bos_id": bos_id(tokenizer), "windows": "calibration region (first 80% of tokens)"},
        "calibration": asdict(config) | {"device": device},
        "features": list(FEATURES),
        "standardisation": {"mean": mean.tolist(), "std": std.tolist(),
                            "note": "columns 1-9 over layers; 10-11 over the action set {3,4,5,6}"},
        "versions": _versions(),
        "wall_time_s": round(time.time() - started, 2),
    }
    written = artifact.write(out, manifest, tensors)
    _log(f"wrote {out}: {len(layers)} layers, embedding {embedding.shape}, {manifest['wall_time_s']} s")
    return written


def _layer_rows(model, layers, stats) -> tuple[dict, list, int]:
    """Per layer: its activation statistics (tensors) and its embedding row (weights read where they live)."""
    from accelerate.utils import align_module_device

    n_blocks = 1 + max(layer.block for layer in layers)
    modules = dict(model.named_modules())
    tensors, rows = {}, []
    for layer in layers:
        s = stats[layer.name]
        with align_module_device(modules[layer.name], torch.device("cpu")):  # an offloaded weight, brought in
            w = modules[layer.name].weight.detach().to("cpu", dtype=torch.float64)
        if not bool(w.isfinite().all()):
            raise UserError(f"the weights of {layer.name} are not finite")
        act_max = s.max_abs.numpy()
        tensors[f"{layer.gguf_name}.act_max"] = act_max.astype(np.float32)
        tensors[f"{layer.gguf_name}.act_mean_abs"] = s.mean_abs.numpy().astype(np.float32)
        tensors[f"{layer.gguf_name}.act_mean_sq"] = s.mean_sq.numpy().astype(np.float32)
        rows.append(layer_embedding(layer, n_blocks, float(w.std()), float(w.abs().mean()), act_max))
    return tensors, rows, n_blocks


def _small_config(model) -> dict:
    config = model.config.to_dict()
    keep = ("model_type", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
            "num_key_value_heads", "head_dim", "vocab_size", "tie_word_embeddings", "rms_norm_eps")
    return {k: config[k] for k in keep if k in config}
