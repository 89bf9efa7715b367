"""The policies shipped in policies/: small, carded, loadable by name, and usable zero-shot on another model."""

import json
from pathlib import Path

import pytest

from calibration.pipeline import CalibrationConfig, calibrate
from ramp.agents.policy_io import SHIPPED, load_policy_card, resolve_policy
from ramp.api import transfer

SHIPPED_NAMES = sorted(p.stem for p in SHIPPED.glob("*.safetensors"))
CARD_KEYS = {"training_model", "training_model_sha256", "budget", "episodes", "seed", "action_bits", "measured"}


def test_policies_are_shipped():
    assert "smollm2-135m" in SHIPPED_NAMES


@pytest.mark.parametrize("name", SHIPPED_NAMES)
def test_shipped_policy_is_small_and_carded(name):
    weights = resolve_policy(name)
    assert weights == SHIPPED / f"{name}.safetensors" and weights.stat().st_size < 5_000_000
    tensors, card = load_policy_card(name)
    # guided SAC starts every episode from the knapsack's allocation: 100 episodes is the joint searches' budget
    assert CARD_KEYS <= set(card) and card["name"] == name and card["episodes"] >= 100
    measured = card["measured"]
    assert measured["ppl_test"] > 0 and measured["file_bytes"] > 0 and "test_text" in measured
    assert json.loads((SHIPPED / f"{name}.json").read_text()) == card


@pytest.mark.parametrize("name", SHIPPED_NAMES)
def test_shipped_policy_transfers_by_name(name, tiny_llama_dir, tmp_path):
    cal = calibrate(CalibrationConfig(model=str(tiny_llama_dir), samples=4, seq_len=64), tmp_path / "cal")
    summary = transfer(name, str(tiny_llama_dir), tmp_path / "out", budget=5.0, calibration=str(cal.path),
                       evaluate=False)
    alloc = json.loads((Path(tmp_path) / "out" / "allocation.json").read_text())
    bits = [layer["bits"] for layer in alloc["layers"]]
    assert len(bits) == len(cal.layers) and set(bits) <= {3, 4, 5, 6}
    assert summary is not None
