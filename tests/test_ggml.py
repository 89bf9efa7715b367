"""halo.ggml: libggml's quantizer through ctypes, checked against gguf-py's independent decoder."""

import gguf
import numpy as np
import pytest

from halo import ggml, qtypes
from ramputils.errors import UserError

QType = gguf.GGMLQuantizationType
SUPPORTED = list(qtypes.NOMINAL_BITS)
BLOCK32 = [t for t in SUPPORTED if gguf.GGML_QUANT_SIZES[t][0] in (1, 32)]
# Formats that round each block to a grid set by its own extremes: decoding and re-encoding is exact.
REENCODE_EXACT = [QType.F32, QType.F16, QType.BF16, QType.Q8_0, QType.Q5_1, QType.Q5_0, QType.Q4_1, QType.Q4_0]
# llama.cpp's K-quant ladder, from fewest to most bits.
K_LADDER = [QType.Q2_K, QType.Q3_K, QType.Q4_K, QType.Q5_K, QType.Q6_K, QType.Q8_0]


def matrix(kind: str, rows: int, cols: int, seed: int = 0) -> np.ndarray:
    """Gaussian or heavy-tailed (Student t, 3 dof) weights, float32."""
    rng = np.random.default_rng(seed)
    if kind == "gauss":
        return rng.standard_normal((rows, cols)).astype(np.float32) * 0.02
    return rng.standard_t(3, (rows, cols)).astype(np.float32) * 0.02


def rel_rmse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a - b) ** 2)) / np.std(b))


def error_bound(qtype: QType) -> float:
    """A loose bound on relative RMSE: a b-bit grid over a few standard deviations, or float epsilon."""
    if qtype == QType.F32:
        return 0.0
    if qtype in (QType.F16, QType.BF16):
        return 2.0 ** -(8 if qtype == QType.BF16 else 11)
    return 2.0 ** (1 - qtypes.NOMINAL_BITS[qtype]) * 1.5


@pytest.mark.parametrize("kind", ["gauss", "heavy"])
@pytest.mark.parametrize("cols", [256, 512, 576])
@pytest.mark.parametrize("qtype", SUPPORTED, ids=lambda t: t.name)
def test_round_trip_through_gguf_py(qtype, cols, kind):
    if cols % gguf.GGML_QUANT_SIZES[qtype][0]:
        with pytest.raises(UserError, match="divisible"):
            ggml.quantize(matrix(kind, 4, cols), qtype)
        return
    x = matrix(kind, 48, cols)
    data = ggml.quantize(x, qtype)
    assert data.dtype == np.uint8 and data.shape == (48, ggml.row_bytes(qtype, cols))
    assert ggml.validate(data, qtype)
    y = ggml.dequantize(data, qtype, x.shape)
    assert y.dtype == np.float32 and y.shape == x.shape
    assert rel_rmse(y, x) <= error_bound(qtype)
    np.testing.assert_array_equal(ggml.quantize_dequantize(x, qtype), y)


@pytest.mark.parametrize("qtype", REENCODE_EXACT, ids=lambda t: t.name)
@pytest.mark.parametrize("kind", ["gauss", "heavy"])
def test_decoded_weights_re_encode_to_the_same_bytes(qtype, kind):
    data = ggml.quantize(matrix(kind, 32, 576, seed=3), qtype)
    again = ggml.quantize(ggml.dequantize(data, qtype, (32, 576)), qtype)
    np.testing.assert_array_equal(again, data)


@pytest.mark.parametrize("kind", ["gauss", "heavy"])
def test_more_bits_less_error_along_the_k_quant_ladder(kind):
    x = matrix(kind, 64, 512, seed=1)
    errors = [rel_rmse(ggml.quantize_dequantize(x, t), x) for t in K_LADDER]
    assert errors == sorted(errors, reverse=True), dict(zip([t.name for t in K_LADDER], errors))


@pytest.mark.parametrize("cols", [32, 256, 576, 1536])
@pytest.mark.parametrize("qtype", SUPPORTED, ids=lambda t: t.name)
def test_row_bytes_matches_gguf_py(qtype, cols):
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    if cols % block:
        with pytest.raises(UserError):
            ggml.row_bytes(qtype, cols)
    else:
        assert ggml.row_bytes(qtype, cols) == cols // block * size


def test_f16_matches_numpy():
    x = matrix("heavy", 16, 512) * 1000
    np.testing.assert_array_equal(ggml.quantize(x, QType.F16).view(np.float16), x.astype(np.float16))


def weighted_error(x, y, imatrix):
    return float(np.sum(imatrix * (x - y) ** 2))


@pytest.mark.parametrize("qtype", [QType.Q3_K, QType.Q4_K, QType.Q5_K, QType.Q6_K, QType.Q2_K], ids=lambda t: t.name)
def test_imatrix_changes_k_quants_and_lowers_weighted_error(qtype):
    x = matrix("heavy", 64, 512, seed=2)
    rng = np.random.default_rng(5)
    imatrix = (rng.lognormal(0.0, 2.0, 512) ** 2).astype(np.float32)  # a few channels matter much more
    plain = ggml.quantize(x, qtype)
    weighted = ggml.quantize(x, qtype, imatrix)
    assert (plain != weighted).any()
    err_plain = weighted_error(x, ggml.dequantize(plain, qtype, x.shape), imatrix)
    err_weighted = weighted_error(x, ggml.dequantize(weighted, qtype, x.shape), imatrix)
    assert err_weighted < err_plain


def test_q8_0_ignores_imatrix_like_llama_cpp():
    x = matrix("gauss", 8, 256)
    imatrix = np.linspace(0.1, 10, 256, dtype=np.float32)
    np.testing.assert_array_equal(ggml.quantize(x, QType.Q8_0, imatrix), ggml.quantize(x, QType.Q8_0))


@pytest.mark.parametrize("qtype", [QType.Q4_K, QType.IQ4_NL, QType.F16], ids=lambda t: t.name)
def test_threaded_split_gives_identical_bytes(qtype):
    x = matrix("heavy", 97, 512, seed=4)
    imatrix = np.random.default_rng(0).random(512).astype(np.float32)
    one = ggml.quantize(x, qtype, imatrix, threads=1)
    np.testing.assert_array_equal(ggml.quantize(x, qtype, imatrix, threads=3), one)
    np.testing.assert_array_equal(ggml.quantize(x, qtype, imatrix, threads=200), one)


def test_bad_inputs_are_user_errors():
    x = matrix("gauss", 4, 256)
    with pytest.raises(UserError, match="NaN"):
        ggml.quantize(np.where(x > 0.03, np.nan, x), QType.Q4_K)
    with pytest.raises(UserError, match="imatrix must have shape"):
        ggml.quantize(x, QType.Q4_K, np.ones(128, np.float32))
    with pytest.raises(UserError, match="non-negative"):
        ggml.quantize(x, QType.Q4_K, -np.ones(256, np.float32))
    with pytest.raises(UserError, match="matrix"):
        ggml.quantize(x[0], QType.Q4_K)
    with pytest.raises(UserError, match="importance matrix"):
        ggml.quantize(x, QType.IQ2_XXS)  # libggml would abort the process here
    assert ggml.requires_imatrix(QType.IQ2_XXS) and not ggml.requires_imatrix(QType.Q4_K)
