"""ramp.dynaquant.formats: the bitsandbytes tables, rounding, error bounds, storage and the STE."""

import pytest
import torch

from ramp.dynaquant import formats
from ramp.dynaquant.formats import BITS, FORMATS, FP4_CODE, NF4_CODE, fake_quant, quantize, storage_bytes
from ramputils.errors import UserError

# Published in bitsandbytes: bitsandbytes/functional.py get_4bit_type("nf4") and the
# nf4_dequantization_lut in csrc/kernels.cu (github.com/bitsandbytes-foundation/bitsandbytes).
BNB_NF4 = [-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
           -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
           0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
           0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0]
# Published in bitsandbytes: get_4bit_type("fp4") lists 0, 0.0625, 8, 12, 4, 6, 2, 3 and their negatives,
# then divides by the absmax 12; csrc/kernels.cu fp4_dequantization_lut holds the same 8 magnitudes.
BNB_FP4 = [0.0, 0.005208333333, 0.66666667, 1.0, 0.33333333, 0.5, 0.16666667, 0.25]
BNB_FP4 = BNB_FP4 + [-v for v in BNB_FP4]
# dQuantizeFP4's pivots (on |x|) in csrc/kernels.cu.
BNB_FP4_PIVOTS = [0.00260417, 0.0859375, 0.20833333, 0.29166667, 0.4166667, 0.583333, 0.8333333]
FOUR_BIT = {"nf4": NF4_CODE, "fp4": FP4_CODE}


def weights(shape=(24, 96), seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=gen) * 0.05


def block_view(w):
    flat = w.reshape(-1)
    return torch.nn.functional.pad(flat, (0, -flat.numel() % 64)).view(-1, 64)


def test_tables_match_bitsandbytes():
    assert NF4_CODE.dtype == FP4_CODE.dtype == torch.float32
    assert torch.equal(NF4_CODE, torch.tensor(BNB_NF4, dtype=torch.float32))
    assert torch.allclose(FP4_CODE, torch.tensor(BNB_FP4), atol=1e-8, rtol=0)
    assert torch.equal(NF4_CODE, NF4_CODE.sort().values)
    assert {NF4_CODE[0].item(), NF4_CODE[7].item(), NF4_CODE[15].item()} == {-1.0, 0.0, 1.0}
    assert FP4_CODE.abs().max().item() == 1.0
    assert torch.allclose(formats._FP4_MID, torch.tensor(BNB_FP4_PIVOTS), atol=1e-6, rtol=0)


def test_check_format():
    assert formats.check_format("NF4") == "nf4"
    with pytest.raises(UserError, match="nf3.*nf4, fp4, int8, fp16"):
        formats.check_format("nf3")
    with pytest.raises(UserError):
        quantize(weights(), "nf3")
    assert set(BITS) == set(FORMATS) == set(formats.GGUF_TYPE)


@pytest.mark.parametrize("fmt", ["nf4", "fp4"])
def test_4bit_values_are_code_times_block_absmax(fmt):
    w = weights((10, 70))  # 700 weights: 10 full blocks plus a short one of 60
    q = quantize(w, fmt)
    blocks, qblocks = block_view(w), block_view(q)
    absmax = blocks.abs().amax(dim=1, keepdim=True)
    allowed = FOUR_BIT[fmt].view(1, 1, -1) * absmax.unsqueeze(-1)  # (blocks, 1, 16)
    dist = (qblocks.unsqueeze(-1) - allowed).abs().amin(dim=-1)
    assert dist.max().item() <= 1e-7
    # the reconstruction is the nearest code (ties have measure zero for random data)
    nearest = (blocks.unsqueeze(-1) - allowed).abs().argmin(dim=-1)
    assert torch.allclose(qblocks, allowed.squeeze(1).gather(1, nearest), atol=1e-7, rtol=0)
    assert torch.equal(qblocks.abs().amax(dim=1), blocks.abs().amax(dim=1))  # the block max is exact


@pytest.mark.parametrize("fmt", FORMATS)
def test_shape_dtype_and_idempotence(fmt):
    for w in (weights(), weights((7, 33), seed=1), weights((3, 50), seed=2).to(torch.bfloat16)):
        q = quantize(w, fmt)
        assert q.shape == w.shape and q.dtype == w.dtype and not q.requires_grad
        assert torch.equal(quantize(q, fmt), q)


@pytest.mark.parametrize("fmt", ["nf4", "fp4"])
def test_4bit_error_bound(fmt):
    w = weights((16, 200), seed=3)
    sorted_code = FOUR_BIT[fmt].sort().values
    half_gap = (sorted_code[1:] - sorted_code[:-1]).max() / 2
    blocks = block_view(w)
    err = (blocks - block_view(quantize(w, fmt))).abs()
    assert (err <= half_gap * blocks.abs().amax(dim=1, keepdim=True) + 1e-7).all()


def test_int8_rowwise_scale_and_bound():
    w = weights((12, 40), seed=4)
    w[3] *= 100.0  # a big row must not change the other rows' scale
    q = quantize(w, "int8")
    absmax = w.abs().amax(dim=1, keepdim=True)
    codes = q / (absmax / 127)
    assert torch.allclose(codes, codes.round(), atol=1e-4, rtol=0)
    assert codes.abs().max().item() <= 127 + 1e-4
    assert ((w - q).abs() <= absmax / 254 * (1 + 1e-6)).all()
    assert torch.equal(quantize(w[:3], "int8"), q[:3])


def test_fp16_is_half_round_trip():
    w = weights(seed=5)
    assert torch.equal(quantize(w, "fp16"), w.half().float())


@pytest.mark.parametrize("fmt", FORMATS)
def test_numel_not_multiple_of_64_and_zeros(fmt):
    w = weights((5, 13), seed=6)  # 65 weights
    q = quantize(w, fmt)
    assert q.shape == (5, 13) and torch.isfinite(q).all()
    z = torch.zeros(4, 100)
    z[0, :3] = 0.5  # one block with data, the other blocks (and rows) all zero
    qz = quantize(z, fmt)
    assert torch.isfinite(qz).all() and (qz[1:] == 0).all()
    assert torch.equal(quantize(torch.zeros(3, 64), fmt), torch.zeros(3, 64))


def test_storage_bytes_by_hand():
    shape = (576, 1536)  # 884736 weights = 13824 blocks of 64
    assert storage_bytes("nf4", shape) == 442368 + 4 * 13824 == 497664
    assert storage_bytes("fp4", shape) == 497664
    assert storage_bytes("int8", shape) == 884736 + 4 * 576 == 887040
    assert storage_bytes("fp16", shape) == 1769472
    assert formats.bits_per_weight("nf4", shape) == 4.5
    assert formats.bits_per_weight("fp16", shape) == 16.0
    assert formats.bits_per_weight("int8", shape) == pytest.approx(8 + 32 / 1536)
    assert storage_bytes("nf4", (5, 13)) == 33 + 8  # 65 weights: 33 packed bytes, 2 blocks


@pytest.mark.parametrize("fmt", FORMATS)
def test_fake_quant_straight_through(fmt):
    w = weights(seed=7).requires_grad_(True)
    out = fake_quant(w, fmt)
    # w + (q - w) is q up to one float32 rounding of the sum
    assert torch.allclose(out.detach(), quantize(w, fmt), atol=1e-7, rtol=0)
    upstream = torch.randn_like(w)
    out.backward(upstream)
    assert torch.equal(w.grad, upstream)
