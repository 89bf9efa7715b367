"""HALO: exact GGUF quantization with libggml, scale folding, mixed-precision export and llama.cpp evaluation."""

__version__ = "0.1.0"

# the Python API (light: torch, transformers and llama.cpp load when a function runs)
from .api import BenchResult, bench, export  # noqa: E402

__all__ = ['BenchResult', 'bench', 'export']
