"""The resumable state of a search: agent, optimisers, replay buffer, RNG states, episode count, best so far.

Saved after every episode with torch.save to a temporary name and renamed, and loaded with
`weights_only=True` (no code runs on load).  numpy arrays travel as tensors.
"""

import os
from pathlib import Path

import numpy as np
import torch

from ramputils.errors import UserError

NAME = "checkpoint.pt"


def _to_torch(obj):
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": torch.from_numpy(obj.copy())}
    if isinstance(obj, dict):
        return {k: _to_torch(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_torch(v) for v in obj]
    return obj


def _to_numpy(obj):
    if isinstance(obj, dict):
        if set(obj) == {"__ndarray__"}:
            return obj["__ndarray__"].numpy()
        return {k: _to_numpy(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_numpy(v) for v in obj]
    return obj


def save(directory: Path, state: dict) -> None:
    path = Path(directory) / NAME
    tmp = path.with_name(f".{NAME}.tmp")
    torch.save(_to_torch(state), tmp)
    os.replace(tmp, path)


def load(directory: Path) -> dict | None:
    path = Path(directory) / NAME
    if not path.exists():
        return None
    try:
        return _to_numpy(torch.load(path, weights_only=True))
    except Exception as exc:
        raise UserError(f"cannot resume from {path}: {exc.__class__.__name__}; delete it to start over") from None
