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


def choice(layer, pick) -> Choice:
    """What one layer gets for `pick` (a bit width or type name): the real type after llama.cpp's fallback, bytes."""
    return resolve([layer], [pick]).choices[0]


def uniform(layers, pick) -> Allocation:
    return resolve(layers, [pick] * len(layers), {"method": f"uniform {pick}"})


def load(path: Path, layers) -> Allocation:
    """Read an allocation file and resolve it against `layers`, matching entries by tensor name (any order);
    any mismatch is one clear error that names what does not match."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UserError(f"allocation file not found: {path}") from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read allocation {path} ({exc})") from None
    rows = data.get("layers") if isinstance(data, dict) else None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise UserError(f'{path} is not an allocation: it needs "layers", a list of entries each with "tensor" and '
                        f'"bits" or "type"')
    by_name = {}
    for i, row in enumerate(rows):
        if not isinstance(row.get("tensor"), str):
            raise UserError(f'{path}: entry {i} has no "tensor" name')
        if row["tensor"] in by_name:
            raise UserError(f"{path}: tensor {row['tensor']!r} appears twice")
        if ("bits" in row) == ("type" in row) and "gguf_type" not in row:
            raise UserError(f"{path}: entry {row['tensor']} needs exactly one of bits or type")
        by_name[row["tensor"]] = row
    _check_names(path, list(by_name), [layer.gguf_name for layer in layers])
    picks = [by_name[layer.gguf_name].get("type", by_name[layer.gguf_name].get("bits")) for layer in layers]
    meta = {k: v for k, v in data.items() if k not in ("layers", "summary", "format", "format_version")}
    return resolve(layers, picks, meta)


def _check_names(path: Path, names: list[str], wanted: list[str]) -> None:
    """One error saying which tensor names of the file the model lacks and which of its layers the file lacks."""
    unknown = [n for n in names if n not in set(wanted)]
    missing = [n for n in wanted if n not in set(names)]
    if not unknown and not missing:
        return
    parts = []
    if unknown:
        parts.append(f"{len(unknown)} tensor name{'s' if len(unknown) > 1 else ''} the model does not have "
                     f"({', '.join(map(repr, unknown[:3]))}{', ...' if len(unknown) > 3 else ''})")
    if missing:
        parts.append(f"{len(missing)} of the model's {len(wanted)} layers missing "
                     f"({', '.join(map(repr, missing[:3]))}{', ...' if len(missing) > 3 else ''})")
    hint = ""
    if unknown and all(f"{n}.weight" in wanted for n in unknown):
        hint = "; tensor names are GGUF names ending in .weight"
    raise UserError(f"{path} does not match the model's layers: {' and '.join(parts)}{hint}; "
                    "was it made for another model?")


def save(allocation: Allocation, path: Path) -> None:
    """Write atomically (temporary name, then rename)."""
    write_json(path, allocation.to_dict())
