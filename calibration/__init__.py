"""Calibration: load a causal LM, list its quantizable linear layers, run calibration text through
forward hooks and compute the per-layer statistics and 11-dimensional RAMP embeddings."""

from ramputils import __version__  # noqa: F401 (from the installed package)

# the Python API (light: torch, transformers and llama.cpp load when a function runs)
from .api import calibrate, default_model_path  # noqa: E402

__all__ = ['calibrate', 'default_model_path']
