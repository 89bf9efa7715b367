"""llama.cpp's own mixes (Q4_K_M, ...) of the base model: the baselines every RAMP file is compared to.

The base model is written once as an F32 GGUF by HALO, then quantized by `llama_model_quantize`
exactly as `llama-quantize` would, optionally with the calibration's importance matrix.
"""

import tempfile
from pathlib import Path

from calibration import artifact
from calibration.models import load_model, resolve
from ramputils.errors import UserError

from .imatrix import imatrix_table
from .llama_quantize import quantize_file
from .writer import write_base_gguf


def make_preset(model_spec: str, preset: str, out: Path, calibration_dir: Path | None = None,
                base: Path | None = None) -> Path:
    """Quantize the base model of `model_spec` with llama.cpp's `preset`; imatrix when a calibration is given."""
    out = Path(out)
    if not out.parent.is_dir():
        raise UserError(f"output directory {out.parent} does not exist")
    imatrix = imatrix_table(artifact.read(calibration_dir)) if calibration_dir else None
    if base is not None:
        return quantize_file(Path(base), out, preset, imatrix=imatrix)
    source = resolve(model_spec)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".halo-base-") as tmp:
        f32 = write_base_gguf(load_model(source), source, Path(tmp) / "base-f32.gguf")
        return quantize_file(f32, out, preset, imatrix=imatrix)
