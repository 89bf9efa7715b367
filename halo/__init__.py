"""HALO: exact GGUF quantization with libggml, scale folding, mixed-precision export and llama.cpp evaluation."""

__version__ = "0.1.0"
