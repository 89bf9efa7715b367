"""A bit allocation: one GGUF type per quantizable layer, shared by the search and the export.

File format (JSON):
  {"format": "ramp-allocation", "format_version": 1,
   "layers": [{"tensor": "blk.0.attn_q.weight", "bits": 4}, {"tensor": ..., "type": "Q8_0"}, ...],
   ... anything else (budget, provenance, predictions) is kept as metadata}
A layer gives either `bits` (RAMP eq. 23 through `halo.qtypes`) or an explicit `type`.  Resolving an
allocation against a model's layer table checks names and order, applies llama.cpp's row-size
fallback and counts real bytes; budgets are always computed from those bytes.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

from halo import qtypes
from ramputils.atomic import write_json
from ramputils.errors import UserError

FORMAT = "ramp-allocation"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Choice:
    """The type of one layer: what was asked, what llama.cpp really writes, and what it costs."""

    tensor: str
    requested: qtypes.QType
    actual: qtypes.QType
    params: int
    bytes: int

    @property
    def bits(self) -> int:
        return qtypes.nominal_bits(self.requested)

    def to_dict(self) -> dict:
        return {"tensor": self.tensor, "bits": self.bits, "type": self.requested.name,
                "gguf_type": self.actual.name, "params": self.params, "bytes": self.bytes}


@dataclass
class Allocation:
    """Resolved per-layer choices in layer-table order, plus free-form metadata."""

    choices: list[Choice]
    meta: dict = field(default_factory=dict)

    @property
    def bytes(self) -> int:
        return sum(c.bytes for c in self.choices)

    @property
    def params(self) -> int:
        return sum(c.params for c in self.choices)

    @property
    def bpw(self) -> float:
        """Effective bits per weight of the quantizable layers, from real bytes (after fallbacks)."""
        return self.bytes * 8 / self.params

    @property
    def nominal_bpw(self) -> float:
        """The paper's way of counting: parameter-weighted mean of the nominal bit widths."""
        return sum(c.bits * c.params for c in self.choices) / self.params

    def types(self) -> dict[str, qtypes.QType]:
        return {c.tensor: c.actual for c in self.choices}

    def to_dict(self) -> dict:
        summary = {"bytes": self.bytes, "params": self.params, "bpw": round(self.bpw, 4),
                   "nominal_bpw": round(self.nominal_bpw, 4)}
        return {"format": FORMAT, "format_version": FORMAT_VERSION} | self.meta | {
            "summary": summary, "layers": [c.to_dict() for c in self.choices]}


def resolve(layers, picks, meta: dict | None = None) -> Allocation:
    """Choices for `layers` (a layer table) from `picks`: one bit width or type name per layer."""
    picks = list(picks)
    if len(picks) != len(layers):
        raise UserError(f"the allocation has {len(picks)} entries but the model has {len(layers)} quantizable layers")
    choices = []
    for layer, pick in zip(layers, picks):
        requested, actual = qtypes.resolve_type(pick, layer.in_features)
        choices.append(Choice(layer.gguf_name, requested, actual, layer.params,
                              qtypes.tensor_bytes(actual, (layer.out_features, layer.in_features))))
    return Allocation(choices, dict(meta or {}))


def uniform(layers, pick) -> Allocation:
    return resolve(layers, [pick] * len(layers), {"method": f"uniform {pick}"})


def load(path: Path, layers) -> Allocation:
    """Read an allocation file and resolve it against `layers`; any mismatch is one clear error."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UserError(f"allocation file not found: {path}") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"cannot read allocation {path} ({exc})") from None
    rows = data.get("layers") if isinstance(data, dict) else None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise UserError(f"{path} is not an allocation: it needs a list of layers with tensor and bits/type")
    if len(rows) != len(layers):
        raise UserError(f"{path} has {len(rows)} layers but the model has {len(layers)}: "
                        "it was made for another model")
    picks = []
    for row, layer in zip(rows, layers):
        if row.get("tensor") != layer.gguf_name:
            raise UserError(f"{path}: entry {layer.index} is {row.get('tensor')!r} but the model's layer "
                            f"{layer.index} is {layer.gguf_name!r}: it was made for another model")
        if ("bits" in row) == ("type" in row) and "gguf_type" not in row:
            raise UserError(f"{path}: entry {layer.gguf_name} needs exactly one of bits or type")
        picks.append(row["type"] if "type" in row else row["bits"])
    meta = {k: v for k, v in data.items() if k not in ("layers", "summary", "format", "format_version")}
    return resolve(layers, picks, meta)


def save(allocation: Allocation, path: Path) -> None:
    """Write atomically (temporary name, then rename)."""
    write_json(path, allocation.to_dict())
