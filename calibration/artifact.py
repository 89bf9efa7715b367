"""The calibration artifact: one folder with `manifest.json` and `stats.safetensors`.

Tensors: for each layer (by GGUF tensor name) `<name>.act_max`, `<name>.act_mean_abs` and
`<name>.act_mean_sq` (per input channel, float32), plus `embedding` (L, 11), `embedding_mean` and
`embedding_std` (11,).  The manifest holds the model source and hash, architecture, layer table,
data source and hash, seed, counts, versions and the `key` that identifies the inputs.

Writing is atomic: everything goes to a hidden temporary folder beside the target, which is then
renamed into place, so a crash never leaves a half-written artifact under the real name.
"""

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ramputils.errors import UserError

from .layers import Layer

FORMAT = "ramp-calibration"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
TENSORS = "stats.safetensors"


@dataclass
class Calibration:
    """A loaded calibration artifact."""

    path: Path
    manifest: dict
    tensors: dict[str, np.ndarray]

    @property
    def layers(self) -> list[Layer]:
        return [Layer(**{k: v for k, v in row.items() if k != "params"}) for row in self.manifest["layers"]]

    @property
    def embedding(self) -> np.ndarray:
        return self.tensors["embedding"]

    def check_layers(self, layers: list[Layer]) -> None:
        """Fail unless `layers` (a model's layer table) is the table this artifact was made for."""
        mine = [(l.name, l.in_features, l.out_features) for l in self.layers]
        theirs = [(l.name, l.in_features, l.out_features) for l in layers]
        if mine != theirs:
            raise UserError(f"the calibration at {self.path} was made for another model "
                            f"({len(mine)} layers vs {len(theirs)} here); calibrate this model first")

    def channel(self, gguf_name: str, stat: str) -> np.ndarray:
        """A per-channel statistic (`act_max`, `act_mean_abs`, `act_mean_sq`) of one layer."""
        return self.tensors[f"{gguf_name}.{stat}"]


def check_destination(out: Path) -> None:
    """Fail early when `out` cannot receive an artifact (before any expensive work)."""
    if out.exists() and not out.is_dir():
        raise UserError(f"output {out} exists and is not a directory")
    parent = out.parent
    parent_exists = parent.is_dir()
    if not parent_exists:
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot create output directory {parent} ({exc.strerror})") from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"output directory {parent} is not writable")
    if out.is_dir() and any(out.iterdir()) and not (out / MANIFEST).exists():
        raise UserError(f"output {out} exists, is not empty and is not a calibration artifact; "
                        "choose another --out")


def existing(out: Path) -> Calibration | None:
    """The artifact already at `out`, None if there is none; a damaged one is an error."""
    if not (out / MANIFEST).exists():
        return None
    return read(out)


def read(path: Path) -> Calibration:
    """Load and validate an artifact; any damage is reported as one line."""
    from safetensors.numpy import load_file

    path = Path(path)
    if not path.is_dir():
        raise UserError(f"calibration artifact not found: {path}")
    try:
        manifest = json.loads((path / MANIFEST).read_text())
        tensors = load_file(str(path / TENSORS))
        if manifest.get("format") != FORMAT:
            raise ValueError(f"format is {manifest.get('format')!r}")
        if manifest.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"format version {manifest.get('format_version')} (this RAMP reads {FORMAT_VERSION})")
        n = len(manifest["layers"])
        if tensors["embedding"].shape != (n, 11):
            raise ValueError(f"embedding shape {tensors['embedding'].shape} does not fit {n} layers")
        for row in manifest["layers"]:
            for stat in ("act_max", "act_mean_abs", "act_mean_sq"):
                if tensors[f"{row['gguf_name']}.{stat}"].shape != (row["in_features"],):
                    raise ValueError(f"{row['gguf_name']}.{stat} has the wrong shape")
    except Exception as exc:  # any failure to read or validate means the artifact is unusable
        detail = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise UserError(f"calibration artifact at {path} is corrupt or incomplete ({detail}); "
                        "delete it and calibrate again") from None
    return Calibration(path=path, manifest=manifest, tensors=tensors)


def write(out: Path, manifest: dict, tensors: dict[str, np.ndarray]) -> Calibration:
    """Write atomically: temporary sibling folder, then rename over `out`."""
    from safetensors.numpy import save_file

    out = Path(out)
    manifest = {"format": FORMAT, "format_version": FORMAT_VERSION} | manifest
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(tmp / TENSORS))
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.replace(out, old / out.name)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return read(out)
