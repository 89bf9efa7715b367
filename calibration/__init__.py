"""Calibration: load a causal LM, list its quantizable linear layers, run calibration text through
forward hooks and compute the per-layer statistics and 11-dimensional RAMP embeddings."""

__version__ = "0.1.0"
