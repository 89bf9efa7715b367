"""RAMP: reinforcement-learned per-layer bit allocation for GGUF quantization."""

from ramputils import __version__  # noqa: F401 (from the installed package)

# the Python API (light: torch, transformers and llama.cpp load when a function runs)
from .api import SearchResult, TransferResult, search, transfer  # noqa: E402

__all__ = ['SearchResult', 'TransferResult', 'search', 'transfer']
