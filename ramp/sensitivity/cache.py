"""Sensitivity tables, cached beside the calibration artifact they were computed from.

A table is `{layer GGUF name: {bits: estimated KL divergence from the base when only that layer is quantized at
those bits}}`.  It is stored in `<calibration>/sensitivity/<method>-<key>.json`, `key` a hash of everything the
numbers depend on (the calibration, the actions, imatrix and scale folding, and the method's own settings: the
evaluation windows of `measured` and `noise`, the backward-pass windows of `fisher`), so every search on the same
calibration reuses it for any budget, and a changed setting computes a new one.  A calibration folder that cannot
be written to keeps its tables in the run folder instead.  Writes are atomic; an unfinished table (a measurement
that was stopped) is resumed where it stopped.
"""

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ramputils.atomic import write_json
from ramputils.errors import UserError
from ramputils.hashing import text_sha256

FORMAT = "ramp-sensitivity"
VERSION = 1


@dataclass
class Record:
    """One method's table and how it was made."""

    method: str
    settings: dict
    table: dict = field(default_factory=dict)   # {gguf_name: {str(bits): KLD estimate}}
    seconds: float = 0.0                        # compute time, summed over every session that worked on it
    evaluations: int = 0                        # forward passes of the evaluator (0 for fisher)
    complete: bool = False

    def cost(self) -> dict:
        """What the table cost, as a search's summary.json reports it."""
        return {"method": self.method, "seconds": self.seconds, "evaluations": self.evaluations}

    def to_json(self) -> dict:
        return {"format": FORMAT, "version": VERSION, "method": self.method, "settings": self.settings,
                "seconds": round(self.seconds, 3), "evaluations": self.evaluations, "complete": self.complete,
                "table": self.table}


def settings(ctx, method: str) -> dict:
    """Everything `method`'s numbers depend on, for the cache key."""
    config = ctx.config
    common = {"method": method, "calibration": ctx.calibration.manifest.get("key"),
              "actions": [int(b) for b in config.actions], "imatrix": config.imatrix, "scale_fold": config.scale_fold}
    if method == "fisher":
        return common | {"fisher_samples": config.fisher_samples, "seed": config.windows.seed}
    return common | {"eval_samples": config.windows.samples, "eval_seq_len": config.windows.seq_len,
                     "seed": config.windows.seed}


def folder(ctx) -> Path:
    """`<calibration>/sensitivity`, or the run folder's `sensitivity` when the calibration is read-only."""
    beside = Path(ctx.calibration.path) / "sensitivity"
    if beside.is_dir() or os.access(beside.parent, os.W_OK):
        return beside
    return Path(ctx.out) / "sensitivity"


def path_for(ctx, method: str) -> Path:
    return folder(ctx) / f"{method}-{text_sha256(json.dumps(settings(ctx, method), sort_keys=True))[:16]}.json"


def load(path: Path, method: str, wanted: dict) -> Record:
    """The record at `path` (a fresh one when there is none); a damaged file is one clear error."""
    if not path.exists():
        return Record(method, wanted)
    try:
        data = json.loads(path.read_text())
        if data.get("format") != FORMAT or data.get("version") != VERSION or data.get("settings") != wanted:
            raise ValueError("not a table of this method and settings")
        return Record(method, wanted, data["table"], float(data["seconds"]), int(data["evaluations"]),
                      bool(data["complete"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"the cached sensitivity table {path} is unreadable ({exc}); delete it to compute it again") \
            from None


def save(path: Path, record: Record) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, record.to_json())
