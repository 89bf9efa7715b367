"""Memory: how much is free, how much a model needs, and whether it is loaded whole or streamed from disk.

A model that fits in half of the free host memory (`HEADROOM`) is loaded whole.  One that does not is loaded
with accelerate (`device_map="auto"`, `max_memory` = that half, the rest offloaded to a folder on disk): its
decoder blocks then live on disk and each one's weights are brought in only while that block runs, so a
forward pass streams the model layer by layer.  The result of a forward pass is the same either way (the
weights are stored as they are, in the run's dtype); only the time differs.
"""

import re
from pathlib import Path

from ramputils.errors import UserError

HEADROOM = 0.5   # a model (or a cache) may take at most this fraction of the free memory
UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12, "KIB": 2**10, "MIB": 2**20,
         "GIB": 2**30, "TIB": 2**40}


def free_host_memory() -> int:
    """Bytes of host memory available to a new allocation (psutil, else /proc/meminfo MemAvailable)."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        meminfo = Path("/proc/meminfo")
        if meminfo.exists():
            for line in meminfo.read_text().splitlines():
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    raise UserError("cannot tell the free memory (no psutil, no /proc/meminfo); give --max-memory")


def parse_bytes(text: str) -> int:
    """'512MB', '2GiB', '1e9' -> bytes."""
    match = re.fullmatch(r"\s*([0-9.eE+]+)\s*([A-Za-z]*)\s*", str(text))
    unit = match.group(2).upper() if match else None
    if match is None or unit not in UNITS:
        raise UserError(f"cannot read {text!r} as a size: give bytes, or a number with KB/MB/GB/KiB/MiB/GiB")
    try:
        value = float(match.group(1)) * UNITS[unit]
    except ValueError:
        raise UserError(f"cannot read {text!r} as a size") from None
    if value < 1:
        raise UserError(f"a memory size must be positive, got {text!r}")
    return int(value)


def model_bytes(model) -> int:
    """Bytes of a model's parameters and buffers (works on a meta-device skeleton)."""
    tensors = [*model.parameters(), *model.buffers()]
    return sum(t.numel() * t.element_size() for t in {id(t): t for t in tensors}.values())


def load_plan(need: int, free: int, max_memory: int | None = None) -> tuple[str, int]:
    """("whole" or "stream", the bytes of host memory the model may take)."""
    allowed = max_memory if max_memory is not None else int(HEADROOM * free)
    return ("whole" if need <= allowed else "stream"), allowed


def load_within(source, device: str, dtype: str, offload_dir: Path, max_memory: int | None = None, log=print):
    """The model whole when it fits (`load_plan`), else placed by accelerate with what does not fit offloaded to
    `offload_dir` (which must outlive the model); `log` says which."""
    from .models import load_model, skeleton

    need = model_bytes(skeleton(source, dtype))
    plan, allowed = load_plan(need, free_host_memory(), max_memory)
    if plan == "whole":
        log(f"loading the model whole: {need / 1e9:.2f} GB of {allowed / 1e9:.2f} GB allowed")
        return load_model(source, device, dtype)
    log(f"the model needs {need / 1e9:.2f} GB, {allowed / 1e9:.2f} GB allowed: streaming its blocks from disk "
        f"(accelerate offload to {offload_dir})")
    return load_model(source, device, dtype, allowed, offload_dir)
