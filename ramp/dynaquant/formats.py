"""The bitsandbytes weight formats, simulated on CPU in torch (quantize, then dequantize).

Sources (bitsandbytes-foundation/bitsandbytes): `bitsandbytes/functional.py` `get_4bit_type` and the
`nf4_dequantization_lut` / `fp4_dequantization_lut` tables, `dQuantizeNF4` / `dQuantizeFP4` in
`csrc/kernels.cu`, and the torch reference kernels `quantize_4bit` / `int8_vectorwise_quant` in
`bitsandbytes/backends/default/ops.py`.

  nf4, fp4  blockwise absmax, blocksize 64 (quantize_4bit's default), over the flattened tensor in
            row-major order; the last block may be short.  x * (1/absmax) goes to the nearest code
            value; bnb compares against the midpoints with `x > midpoint`, so a tie goes to the lower
            code (nf4) or the smaller magnitude (fp4, which decides on |x| and keeps the sign).
  int8      LLM.int8() row-wise absmax: q = round(w * 127/absmax_row), w' = q * absmax_row/127, with
            threshold=0, i.e. WITHOUT the outlier decomposition (bnb with threshold>0 would keep the
            outlier columns in fp16; we quantize every column).  The dequantize step is done in
            float64 and rounded once, so quantize is exactly idempotent.
  fp16      weights rounded to torch.float16 and back.

An all-zero block or row has absmax 0; it quantizes to 0 (bnb would divide by zero).
storage_bytes counts what bnb stores: packed 4-bit codes plus one float32 absmax per block, with no
double quantization (compress_statistics=False); int8 codes plus one float32 scale per row; per-tensor
metadata (shape, dtype, the code table) is not counted.

GGUF_TYPE maps each format to the GGUF type HALO exports it as: IQ4_NL is llama.cpp's non-uniform
4-bit codebook type with 32-wide blocks (so 576-wide rows need no fallback), the closest GGUF analogue
of a 4-bit codebook format such as nf4/fp4; int8 -> Q8_0 (absmax per 32 weights, not per row);
fp16 -> F16.
"""

import math

import torch

from ..config.dynaquant import FORMATS, check_format  # noqa: F401 (part of this module's interface)

BITS = {"nf4": 4, "fp4": 4, "int8": 8, "fp16": 16}
GGUF_TYPE = {"nf4": "IQ4_NL", "fp4": "IQ4_NL", "int8": "Q8_0", "fp16": "F16"}
BLOCKSIZE = 64

# bnb's NF4 table, index order = the 4-bit code (already sorted, -1 .. 1).
NF4_CODE = torch.tensor([
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
    -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
    0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
    0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0], dtype=torch.float32)

# bnb's FP4 (e2m1, bias 3, one subnormal 0.0625) table in code order, divided by its absmax 12.
FP4_CODE = torch.tensor([0.0, 0.0625, 8.0, 12.0, 4.0, 6.0, 2.0, 3.0,
                         -0.0, -0.0625, -8.0, -12.0, -4.0, -6.0, -2.0, -3.0], dtype=torch.float32) / 12.0

_NF4_MID = (NF4_CODE[1:] + NF4_CODE[:-1]) / 2
_FP4_MAG = FP4_CODE[:8].sort().values
_FP4_MID = (_FP4_MAG[1:] + _FP4_MAG[:-1]) / 2


def _blocks(w: torch.Tensor):
    """Flattened float32 weights padded with zeros to (blocks, 64), and their absmax reciprocal."""
    flat = w.detach().reshape(-1).float()
    blocks = torch.nn.functional.pad(flat, (0, -flat.numel() % BLOCKSIZE)).view(-1, BLOCKSIZE)
    absmax = blocks.abs().amax(dim=1, keepdim=True)
    inv = torch.where(absmax > 0, 1.0 / absmax, torch.zeros_like(absmax))
    return blocks, absmax, inv


def _finish(blocks: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return blocks.reshape(-1)[: w.numel()].view(w.shape).to(w.dtype)


def _nf4(w: torch.Tensor) -> torch.Tensor:
    blocks, absmax, inv = _blocks(w)
    idx = torch.searchsorted(_NF4_MID, (blocks * inv).contiguous())  # counts midpoints m with x > m
    return _finish(NF4_CODE[idx] * absmax, w)


def _fp4(w: torch.Tensor) -> torch.Tensor:
    blocks, absmax, inv = _blocks(w)
    x = blocks * inv
    mag = _FP4_MAG[torch.searchsorted(_FP4_MID, x.abs().contiguous())]
    return _finish(torch.where(x < 0, -mag, mag) * absmax, w)


def _int8(w: torch.Tensor) -> torch.Tensor:
    rows = w.detach().reshape(-1, w.shape[-1]).float()
    absmax = rows.abs().amax(dim=1, keepdim=True)
    q = torch.round(rows * torch.where(absmax > 0, 127.0 / absmax, torch.zeros_like(absmax)))
    return (q.double() * (absmax.double() / 127.0)).view(w.shape).to(w.dtype)


def _fp16(w: torch.Tensor) -> torch.Tensor:
    return w.detach().to(torch.float16).to(w.dtype)


_QUANTIZERS = {"nf4": _nf4, "fp4": _fp4, "int8": _int8, "fp16": _fp16}


def quantize(weight: torch.Tensor, fmt: str) -> torch.Tensor:
    """`weight` as bitsandbytes would store and then dequantize it: same shape and dtype, no gradient."""
    return _QUANTIZERS[check_format(fmt)](weight)


def fake_quant(weight: torch.Tensor, fmt: str) -> torch.Tensor:
    """Straight-through estimator: the forward value is quantize(weight), the gradient passes unchanged."""
    with torch.no_grad():
        q = quantize(weight, fmt)
    return weight + (q - weight).detach()


def storage_bytes(fmt: str, shape) -> int:
    """Bytes bitsandbytes stores for a tensor of `shape` (no double quantization, metadata not counted)."""
    fmt, shape = check_format(fmt), tuple(int(s) for s in shape)
    n = math.prod(shape)
    if fmt in ("nf4", "fp4"):
        return (n + 1) // 2 + 4 * -(-n // BLOCKSIZE)
    if fmt == "int8":
        return n + 4 * math.prod(shape[:-1])  # one float32 scale per row
    return 2 * n


def bits_per_weight(fmt: str, shape) -> float:
    """storage_bytes * 8 / number of weights."""
    return storage_bytes(fmt, shape) * 8 / math.prod(int(s) for s in shape)
