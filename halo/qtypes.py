"""Which GGUF tensor type a layer gets: RAMP's bits -> type map, then llama.cpp's shape fallback.

RAMP eq. 23 maps a layer's nominal bit width to a K-quant (3 -> Q3_K ... 6 -> Q6_K, higher ->
Q8_0; 2 -> Q2_K extends it downwards).  A user may also name a type directly ("Q4_K", "IQ4_NL",
"F16").  K-quants need rows (ne[0] = in_features) divisible by 256; where they are not, llama.cpp
substitutes a 32-block type, and F16 where even 32 does not divide.  `actual_type` follows
`tensor_type_fallback` in llama.cpp's src/llama-quant.cpp (llama-cpp-python 0.3.36), which
llama.cpp applies only when the requested file type is a quantized one.  SmolLM2-135M has hidden
576 (not a multiple of 256), so most of its K-quant tensors fall back.
"""

import re

import gguf

from halo import ggml
from ramputils.errors import UserError

QType = gguf.GGMLQuantizationType

# Supported tensor types and their nominal bit widths (the "b" a RAMP action stands for).
NOMINAL_BITS = {
    QType.F32: 32, QType.F16: 16, QType.BF16: 16,
    QType.Q8_0: 8,
    QType.Q6_K: 6,
    QType.Q5_K: 5, QType.Q5_1: 5, QType.Q5_0: 5,
    QType.Q4_K: 4, QType.Q4_1: 4, QType.Q4_0: 4, QType.IQ4_NL: 4, QType.IQ4_XS: 4,
    QType.Q3_K: 3,
    QType.Q2_K: 2,
}

# RAMP eq. 23 (bits above 6 -> Q8_0).
BITS_TO_TYPE = {2: QType.Q2_K, 3: QType.Q3_K, 4: QType.Q4_K, 5: QType.Q5_K, 6: QType.Q6_K}
MIN_BITS, MAX_BITS = 2, 16

# The 32-block substitutes llama.cpp's tensor_type_fallback picks for the 256-block types above.
FALLBACK = {
    QType.Q2_K: QType.Q4_0,
    QType.Q3_K: QType.Q4_0,
    QType.Q4_K: QType.Q5_0,
    QType.Q5_K: QType.Q5_1,
    QType.Q6_K: QType.Q8_0,
    QType.IQ4_XS: QType.IQ4_NL,
}

UNQUANTIZED = (QType.F32, QType.F16, QType.BF16)


def type_for_bits(bits: int) -> QType:
    """RAMP eq. 23: nominal bit width -> requested GGUF type."""
    if isinstance(bits, bool) or not float(bits).is_integer():
        raise UserError(f"bit width must be a whole number, got {bits!r}")
    bits = int(bits)
    if not MIN_BITS <= bits <= MAX_BITS:
        raise UserError(f"bit width must be in {MIN_BITS}..{MAX_BITS}, got {bits}")
    return BITS_TO_TYPE.get(bits, QType.Q8_0)


def parse_type(name: str) -> QType:
    """A supported type from its name ("Q4_K", "q8_0", "F16")."""
    key = str(name).strip().upper()
    qtype = QType.__members__.get(key)
    if qtype is None or qtype not in NOMINAL_BITS:
        supported = ", ".join(t.name for t in NOMINAL_BITS)
        recipe = re.fullmatch(r"(Q\d_K)_[SML]", key)
        hint = f" ({key} is a llama-quantize recipe; its tensor type is {recipe[1]})" if recipe else ""
        raise UserError(f"unknown tensor type {name!r}{hint}; supported: {supported}")
    return qtype


def requested_type(bits_or_name) -> QType:
    """A bit width (int or digit string) through eq. 23, or a type named by the user."""
    if isinstance(bits_or_name, QType):
        if bits_or_name not in NOMINAL_BITS:
            raise UserError(f"unsupported tensor type {bits_or_name.name}")
        return bits_or_name
    if isinstance(bits_or_name, bool):
        raise UserError(f"expected a bit width or a type name, got {bits_or_name!r}")
    if isinstance(bits_or_name, str) and not bits_or_name.strip().isdigit():
        return parse_type(bits_or_name)
    try:
        return type_for_bits(float(bits_or_name))
    except (TypeError, ValueError):
        raise UserError(f"expected a bit width or a type name, got {bits_or_name!r}") from None


def actual_type(qtype: QType, in_features: int) -> QType:
    """The type llama.cpp really writes for rows of `in_features` (its tensor_type_fallback)."""
    qtype = requested_type(qtype)
    if isinstance(in_features, bool) or int(in_features) != in_features or in_features <= 0:
        raise UserError(f"in_features must be a positive integer, got {in_features!r}")
    if qtype in UNQUANTIZED or in_features % ggml.block_size(qtype) == 0:
        return qtype
    substitute = FALLBACK.get(qtype, qtype)  # a 32-block type has no smaller block to move to
    if in_features % ggml.block_size(substitute):
        return QType.F16
    return substitute


def resolve_type(bits_or_name, in_features: int) -> tuple[QType, QType]:
    """(requested, actual) GGUF type of a layer with rows of `in_features` weights."""
    requested = requested_type(bits_or_name)
    return requested, actual_type(requested, in_features)


def nominal_bits(qtype: QType) -> int:
    """The nominal bit width of a type (Q4_K -> 4, Q5_1 -> 5, Q8_0 -> 8, F16 -> 16)."""
    return NOMINAL_BITS[requested_type(qtype)]


def bits_per_weight(qtype: QType) -> float:
    """Real storage cost in bits per weight, scales included (Q4_K -> 4.5, Q8_0 -> 8.5)."""
    qtype = requested_type(qtype)
    cols = ggml.block_size(qtype)
    return ggml.row_bytes(qtype, cols) * 8 / cols


def tensor_bytes(qtype: QType, shape: tuple[int, ...]) -> int:
    """Bytes of a tensor of `shape` (ggml order reversed, i.e. (..., rows, cols)) stored as `qtype`."""
    qtype = requested_type(qtype)
    dims = [int(n) for n in shape]
    if not dims or any(n <= 0 for n in dims):
        raise UserError(f"invalid tensor shape {tuple(shape)}")
    rows = 1
    for n in dims[:-1]:
        rows *= n
    return rows * ggml.row_bytes(qtype, dims[-1])
