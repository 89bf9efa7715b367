"""HALO: exact GGUF quantization with libggml, scale folding, mixed-precision export and llama.cpp evaluation."""

from ramputils import __version__  # noqa: F401 (from the installed package)

# the Python API (light: torch, transformers and llama.cpp load when a function runs)
from .api import BenchResult, bench, export  # noqa: E402

__all__ = ['BenchResult', 'bench', 'export']
