"""RAMP: reinforcement-learned per-layer bit allocation for GGUF quantization."""

__version__ = "0.1.0"
