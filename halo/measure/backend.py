"""Where llama.cpp runs a file: the backends of the installed build, and how many layers go to a GPU.

llama-cpp-python builds llama.cpp with the CPU backend only unless it was installed with `GGML_CUDA=on`
(`RAMP_CUDA=1 bash scripts/setup.sh`).  `gpu_layers` turns what a user asks for (`--gpu-layers N|all`, or
nothing) into llama.cpp's `n_gpu_layers`: by default every layer when the build can offload and none when it
cannot; asking a CPU-only build for GPU layers is a one-line error rather than a silent CPU run.  `describe`
is what a bench records beside its numbers: the backend, the device names and the layers offloaded.
"""

import argparse
import ctypes
import functools
import importlib.util
from pathlib import Path

from ramputils.errors import UserError

ALL = "all"
CUDA_SETUP = "RAMP_CUDA=1 bash scripts/setup.sh (llama-cpp-python built with GGML_CUDA=on)"
# enum ggml_backend_dev_type of the ggml shipped with llama-cpp-python 0.3.x
DEVICE_TYPES = {0: "CPU", 1: "GPU", 2: "IGPU", 3: "ACCEL"}


def parse(text: str) -> int | str:
    """argparse type of `--gpu-layers`: a count >= 0 or "all"."""
    if text.strip().lower() == ALL:
        return ALL
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"a number of layers (0 or more) or {ALL}, got {text!r}")
    return value


@functools.cache
def can_offload() -> bool:
    """Whether the installed llama.cpp has a GPU backend (CUDA, Metal, Vulkan, ...)."""
    import llama_cpp

    return bool(llama_cpp.llama_supports_gpu_offload())


def gpu_layers(requested: int | str | None) -> int:
    """llama.cpp's n_gpu_layers for `requested` (None: all when the build can offload, else 0; -1 means all)."""
    if requested is None:
        return -1 if can_offload() else 0
    if requested != ALL and int(requested) < 0:
        raise UserError(f"GPU layers must be 0 or more, or {ALL}; got {requested}")
    if requested == ALL or int(requested) > 0:
        if not can_offload():
            raise UserError(f"--gpu-layers {requested}: this llama.cpp build has no GPU backend (CPU only); "
                            f"build one with {CUDA_SETUP}, or give --gpu-layers 0")
        return -1 if requested == ALL else int(requested)
    return 0


def _ggml():
    spec = importlib.util.find_spec("llama_cpp")
    lib = ctypes.CDLL(str(Path(spec.origin).parent / "lib" / "libggml.so"))
    base = ctypes.CDLL(str(Path(spec.origin).parent / "lib" / "libggml-base.so"))
    lib.ggml_backend_dev_count.restype = ctypes.c_size_t
    lib.ggml_backend_dev_get.argtypes = [ctypes.c_size_t]
    lib.ggml_backend_dev_get.restype = ctypes.c_void_p
    for name in ("ggml_backend_dev_name", "ggml_backend_dev_description"):
        getattr(base, name).argtypes = [ctypes.c_void_p]
        getattr(base, name).restype = ctypes.c_char_p
    base.ggml_backend_dev_type.argtypes = [ctypes.c_void_p]
    base.ggml_backend_dev_type.restype = ctypes.c_int
    return lib, base


@functools.cache
def devices() -> tuple[dict, ...]:
    """The devices llama.cpp's registry knows: name, description (the GPU's or CPU's model) and kind."""
    import llama_cpp  # noqa: F401  (loads libllama, which registers the backends)

    lib, base = _ggml()
    found = []
    for i in range(lib.ggml_backend_dev_count()):
        dev = lib.ggml_backend_dev_get(i)
        found.append({"name": base.ggml_backend_dev_name(dev).decode(errors="replace"),
                      "description": base.ggml_backend_dev_description(dev).decode(errors="replace"),
                      "kind": DEVICE_TYPES.get(base.ggml_backend_dev_type(dev), "unknown")})
    return tuple(found)


def describe(n_gpu_layers: int, n_layer: int) -> dict:
    """What a bench records: backend, devices, layers offloaded (llama.cpp counts the output layer as one more
    than the n_layer repeating blocks, so "all" is n_layer + 1)."""
    gpus = [d for d in devices() if d["kind"] in ("GPU", "IGPU")]
    offloaded = 0 if not gpus else (n_layer + 1 if n_gpu_layers < 0 else min(n_gpu_layers, n_layer + 1))
    return {"backend": gpus[0]["name"].rstrip("0123456789") if offloaded else "CPU",
            "devices": [f"{d['name']}: {d['description']}" for d in (gpus if offloaded else devices())],
            "gpu_layers": offloaded, "n_layer": n_layer, "gpu_layers_requested": "all" if n_gpu_layers < 0
            else n_gpu_layers}
