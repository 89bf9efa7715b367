"""Calibration and evaluation windows: seeded, fixed length, disjoint."""

import pytest
import torch

from calibration.data import calibration_windows, evaluation_windows, load_text, split_point
from ramputils.errors import UserError


def _positions(tokens, windows):
    """Start offsets of each window inside `tokens` (tokens are distinct so this is unambiguous)."""
    return {int((tokens == w[1]).nonzero()[0]) - 1 for w in windows}


def test_windows_are_seeded_and_disjoint():
    tokens = torch.arange(10_000)
    cal = calibration_windows(tokens, samples=20, seq_len=64, seed=3)
    assert cal.shape == (20, 64)
    assert torch.equal(cal, calibration_windows(tokens, samples=20, seq_len=64, seed=3))
    assert not torch.equal(cal, calibration_windows(tokens, samples=20, seq_len=64, seed=4))
    ev = evaluation_windows(tokens, count=10, seq_len=64, seed=3)
    cut = split_point(len(tokens))
    assert int(cal.max()) < cut <= int(ev.min())
    # windows are contiguous slices and never overlap
    for w in torch.cat([cal, ev]):
        assert torch.equal(w, torch.arange(int(w[0]), int(w[0]) + 64))
    starts = sorted(int(w[0]) for w in cal)
    assert all(b - a >= 64 for a, b in zip(starts, starts[1:]))


def test_bos_replaces_first_token():
    tokens = torch.arange(1000) + 10
    cal = calibration_windows(tokens, samples=4, seq_len=16, seed=0, bos=1)
    assert (cal[:, 0] == 1).all() and (cal[:, 1:] > 1).all()


def test_too_short_data_is_a_clear_error():
    with pytest.raises(UserError, match="holds only 1 windows"):
        calibration_windows(torch.arange(100), samples=5, seq_len=64, seed=0)


def test_default_text_is_the_validation_split():
    text = load_text("wikitext2")
    assert "valid" in text.label and len(text.text) > 1_000_000 and len(text.sha256) == 64
