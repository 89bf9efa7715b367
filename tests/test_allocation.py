"""Allocations: resolution against a layer table, real bytes after fallback, file validation."""

import json

import pytest

from calibration.layers import Layer
from halo import allocation, qtypes
from halo.specials import special_types
from ramputils.errors import UserError

QT = qtypes.QType


def _layers(widths):
    return [Layer(index=i, name=f"l{i}", gguf_name=f"blk.{i}.ffn_down.weight", block=i, role="down",
                  in_features=w, out_features=256) for i, w in enumerate(widths)]


def test_real_bytes_follow_the_fallback():
    layers = _layers([256, 576, 1536])
    alloc = allocation.resolve(layers, [4, 4, 6])
    assert [c.actual for c in alloc.choices] == [QT.Q4_K, QT.Q5_0, QT.Q6_K]
    assert alloc.bytes == 256 * (144 * 1 + 22 * 18 + 210 * 6)
    assert alloc.bpw == pytest.approx(alloc.bytes * 8 / (256 * (256 + 576 + 1536)))
    assert alloc.nominal_bpw == pytest.approx((4 * 256 + 4 * 576 + 6 * 1536) / (256 + 576 + 1536))
    assert alloc.bpw > alloc.nominal_bpw  # scales cost bits: real bpw is never the nominal one


def test_file_round_trip_and_mismatches(tmp_path):
    layers = _layers([256, 512])
    alloc = allocation.resolve(layers, [3, "Q8_0"], {"budget": {"bpw": 4.5}})
    path = tmp_path / "a.json"
    allocation.save(alloc, path)
    back = allocation.load(path, layers)
    assert back.types() == alloc.types() and back.meta["budget"] == {"bpw": 4.5}
    with pytest.raises(UserError, match="another model"):
        allocation.load(path, _layers([256, 512, 256]))
    data = json.loads(path.read_text())
    data["layers"][1]["tensor"] = "blk.9.attn_q.weight"
    path.write_text(json.dumps(data))
    with pytest.raises(UserError, match="another model"):
        allocation.load(path, layers)


def test_entries_match_by_name_and_a_mismatch_names_the_tensors(tmp_path):
    """Hand-written files list layers in any order; names that do not match are named in the one error line."""
    layers = _layers([256, 512, 256])
    path = tmp_path / "a.json"
    rows = [{"tensor": layer.gguf_name, "bits": b} for layer, b in zip(layers, [3, 4, 6])]
    path.write_text(json.dumps({"layers": rows[::-1]}))
    assert [c.bits for c in allocation.load(path, layers).choices] == [3, 4, 6]
    rows[1]["tensor"] = "blk.1.ffn_down"                       # the .weight suffix forgotten
    path.write_text(json.dumps({"layers": rows}))
    with pytest.raises(UserError) as err:
        allocation.load(path, layers)
    message = str(err.value)
    assert "'blk.1.ffn_down'" in message and "'blk.1.ffn_down.weight'" in message and ".weight" in message
    assert "needs" not in message and "\n" not in message
    path.write_text(json.dumps({"layers": rows[:1] + rows[:1]}))
    with pytest.raises(UserError, match="appears twice"):
        allocation.load(path, layers)


@pytest.mark.parametrize("pick, message", [(1, "2..16"), (17, "2..16"), ("Q9_K", "unknown tensor type"),
                                           (3.5, "whole number")])
def test_bad_picks(pick, message, tmp_path):
    path = tmp_path / "a.json"
    path.write_text(json.dumps({"layers": [{"tensor": "blk.0.ffn_down.weight", "bits": pick}]}))
    with pytest.raises(UserError, match=message):
        allocation.load(path, _layers([256]))


def test_special_types_follow_q4_k_m():
    tied = [{"role": "token_embd", "gguf_name": "token_embd.weight", "shape": [49152, 576], "tied": True}]
    assert special_types(tied) == {"token_embd.weight": QT.Q8_0}  # acts as head, 576 % 256 != 0
    untied = [{"role": "token_embd", "gguf_name": "token_embd.weight", "shape": [1000, 512], "tied": False},
              {"role": "output", "gguf_name": "output.weight", "shape": [1000, 512], "tied": False}]
    assert special_types(untied) == {"token_embd.weight": QT.Q4_K, "output.weight": QT.Q6_K}
    assert special_types(untied, token_embd="Q8_0", output="F16") == {"token_embd.weight": QT.Q8_0,
                                                                      "output.weight": QT.F16}
