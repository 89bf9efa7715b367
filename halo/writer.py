"""Writing a GGUF file with gguf-py: metadata + tensors (float or already-quantized), checked on re-read.

A tensor is `(name, data, qtype, shape)` with `shape` the logical numpy shape (rows, columns) in
llama.cpp's layout (see halo.layout):

* qtype F32 / F16: `data` is a float array of that shape (converted to the qtype's dtype);
* any quantized qtype: `data` holds the ggml blocks as uint8, one row of bytes per tensor row,
  i.e. byte shape `gguf.quants.quant_shape_to_byte_shape(shape, qtype)`; gguf-py turns the byte
  shape back into the element shape (`quant_shape_from_byte_shape`) for the tensor info.

The file is written to a temporary name beside `path`, re-read with GGUFReader (names, types,
shapes, sizes) and only then moved onto `path`; any failure leaves no file behind.
"""

import os
from collections import Counter
from pathlib import Path

import numpy as np

from ramputils.errors import UserError

from .gguf_meta import Metadata, source_metadata
from .layout import gguf_tensors

FLOAT_DTYPES = {"F32": np.float32, "F16": np.float16}


def _qtype(qtype):
    from gguf import GGMLQuantizationType

    try:
        return GGMLQuantizationType[qtype] if isinstance(qtype, str) else GGMLQuantizationType(int(qtype))
    except (KeyError, ValueError):
        raise UserError(f"unknown GGML tensor type {qtype!r}") from None


def file_type_for(qtypes) -> int:
    """general.file_type (a gguf.LlamaFileType) for the given types of the 2-D tensors: the most common one."""
    from gguf import LlamaFileType

    if not qtypes:
        return int(LlamaFileType.ALL_F32)
    name = Counter(_qtype(q).name for q in qtypes).most_common(1)[0][0]
    for candidate in ("ALL_" + name, "MOSTLY_" + name, "MOSTLY_" + name + "_M"):
        if candidate in LlamaFileType.__members__:
            return int(LlamaFileType[candidate])
    return int(LlamaFileType.GUESSED)


def _prepared(name: str, data, qtype, shape) -> tuple[np.ndarray, object, tuple]:
    """(array to hand to GGUFWriter.add_tensor, qtype, element shape), checked."""
    from gguf.quants import quant_shape_to_byte_shape

    qtype, shape = _qtype(qtype), tuple(int(s) for s in shape)
    data = np.asarray(data)
    if qtype.name in FLOAT_DTYPES:
        if data.dtype.kind != "f" or data.size != int(np.prod(shape)):
            raise UserError(f"tensor {name}: {qtype.name} needs {np.prod(shape)} floats, got {data.dtype} {data.shape}")
        return np.ascontiguousarray(data.reshape(shape), dtype=FLOAT_DTYPES[qtype.name]), qtype, shape
    try:
        byte_shape = quant_shape_to_byte_shape(shape, qtype)
    except ValueError as exc:
        raise UserError(f"tensor {name}: {exc}") from None
    if data.dtype != np.uint8 or data.size != int(np.prod(byte_shape)):
        raise UserError(f"tensor {name}: {qtype.name} {shape} needs uint8 blocks of shape {byte_shape}, "
                        f"got {data.dtype} {data.shape}")
    return np.ascontiguousarray(data.reshape(byte_shape)), qtype, shape


def _check_written(path: Path, metadata: Metadata, expected: list[tuple]) -> None:
    """Re-read the file: every tensor's name, type, shape and size, and every metadata key."""
    from gguf import GGUFReader

    reader = GGUFReader(path)
    got = [(t.name, t.tensor_type, tuple(int(d) for d in reversed(t.shape)), int(t.n_bytes)) for t in reader.tensors]
    if got != expected:
        bad = next((g, e) for g, e in zip(got + [None] * len(expected), expected) if g != e)
        raise UserError(f"{path}: written tensors do not read back as given (read {bad[0]}, expected {bad[1]})")
    missing = [k for k in metadata.kv if k not in reader.fields]
    if missing:
        raise UserError(f"{path}: metadata keys missing on re-read: {missing[:5]}")


def write_gguf(path, metadata: Metadata, tensors, file_type: int | None = None, progress: bool = True) -> Path:
    """Write `tensors` [(name, data, qtype, shape)] with `metadata` to `path` atomically; returns the path.

    `general.file_type` is `file_type`, else the most common type of the 2-D tensors;
    `general.quantization_version` is gguf-py's GGML_QUANT_VERSION.
    """
    import gguf

    path = Path(path)
    prepared = [(name, *_prepared(name, data, qtype, shape)) for name, data, qtype, shape in tensors]
    if len({p[0] for p in prepared}) != len(prepared):
        raise UserError("duplicate tensor names in the tensors to write")
    if file_type is None:
        file_type = file_type_for([q for _, _, q, shape in prepared if len(shape) >= 2])
    tmp = path.parent / f".{path.name}.{os.getpid()}.tmp"
    writer = None
    try:
        writer = gguf.GGUFWriter(tmp, metadata.arch)
        if metadata.get("general.alignment") is not None:   # a copied alignment must be the one used
            writer.data_alignment = int(metadata.get("general.alignment"))
        metadata.add_to(writer)
        writer.add_file_type(int(file_type))
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        for name, array, qtype, _shape in prepared:
            writer.add_tensor(name, array, raw_dtype=None if qtype.name in FLOAT_DTYPES else qtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file(progress=progress)
        writer.close()
        _check_written(tmp, metadata, [(name, q, shape, a.nbytes) for name, a, q, shape in prepared])
        os.replace(tmp, path)
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        if writer is not None:
            writer.close()
        if tmp.parent.is_dir():
            tmp.unlink(missing_ok=True)
    return path


def header_bytes(metadata: Metadata, shapes: dict) -> int:
    """Bytes a GGUF with `metadata` spends before its tensor data: header, key-values and the info of each
    tensor in `shapes` {name: shape}, padded to the alignment (what a size budget must leave room for)."""
    import tempfile

    import gguf

    with tempfile.TemporaryDirectory() as tmp:
        writer = gguf.GGUFWriter(Path(tmp) / "header.gguf", metadata.arch)
        metadata.add_to(writer)
        writer.add_file_type(0)
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.close()
        size = (Path(tmp) / "header.gguf").stat().st_size
    size += sum(8 + len(name.encode()) + 4 + 8 * max(1, len(shape)) + 4 + 8 for name, shape in shapes.items())
    alignment = int(metadata.get("general.alignment") or gguf.GGUF_DEFAULT_ALIGNMENT)
    return -(-size // alignment) * alignment


def base_tensors(model, source, dtype: str = "F32") -> list[tuple]:
    """The whole model as (name, array, qtype, shape): 2-D weights in `dtype` (F32 or F16), 1-D tensors F32."""
    if dtype not in FLOAT_DTYPES:
        raise UserError(f"base GGUF dtype must be F32 or F16, got {dtype!r}")
    return [(name, array, dtype if array.ndim >= 2 else "F32", array.shape)
            for name, array in gguf_tensors(model, source).items()]


def write_base_gguf(model, source, path, dtype: str = "F32", extra: dict | None = None,
                    progress: bool = True) -> Path:
    """The unquantized base model as a GGUF that stock llama.cpp loads (e.g. for llama-quantize baselines)."""
    return write_gguf(path, source_metadata(source, extra), base_tensors(model, source, dtype), progress=progress)
