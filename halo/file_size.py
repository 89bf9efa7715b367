"""What an exported file costs besides its quantizable layers, for budgets given as a whole-file size."""

from calibration.layers import special_tensors

from . import qtypes
from .exporter import metadata_extra_bound
from .gguf_meta import source_metadata
from .layout import gguf_tensors
from .specials import special_types
from .writer import header_bytes


def bytes_besides_layers(model, source, layer_names: list[str]) -> int:
    """Bytes of everything in the exported file but the quantizable layers' data: embeddings/head per Q4_K_M, F32
    rest, the header (the source's keys and HALO's own at their largest, and every tensor's info) and the worst
    alignment padding of every tensor — an upper bound, so a file budgeted to N bytes is never larger than N."""
    specials = special_types(special_tensors(model, source.gguf_arch))
    total = 0
    tensors = gguf_tensors(model, source)
    for name, array in tensors.items():
        if name in layer_names:
            continue
        qtype = specials.get(name, qtypes.QType.F32)
        total += qtypes.tensor_bytes(qtype, array.shape if array.ndim > 1 else (1, array.shape[0]))
    metadata = source_metadata(source, metadata_extra_bound(layer_names, list(specials)))
    total += header_bytes(metadata, {n: a.shape for n, a in tensors.items()})
    alignment = int(metadata.get("general.alignment") or 32)
    return total + (alignment - 1) * len(tensors)  # each tensor's data starts on an alignment boundary
