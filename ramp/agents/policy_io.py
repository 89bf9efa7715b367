"""Shipped policies: actor weights in safetensors (no code runs on load) plus a JSON card.

The card records what a policy needs to be applied elsewhere: feature names and the training
model's standardisation statistics (transfer standardises the target with its *own* statistics,
eq. 13; these are kept for reference), the action set, the architecture family, versions, the
training model, budget, episodes, seed and measured results.
"""

import json
import os
from pathlib import Path

from calibration.embedding import FEATURES
from ramputils.errors import UserError

POLICY_FORMAT = "ramp-policy"
POLICY_VERSION = 1
SHIPPED = Path(__file__).resolve().parents[2] / "policies"


def save_policy(directory: Path, name: str, tensors: dict, card: dict) -> Path:
    from safetensors.torch import save_file

    directory = Path(directory)
    weights, card_path = directory / f"{name}.safetensors", directory / f"{name}.json"
    card = {"format": POLICY_FORMAT, "format_version": POLICY_VERSION, "features": list(FEATURES)} | card
    for path, write in ((weights, lambda p: save_file(tensors, str(p))),
                        (card_path, lambda p: p.write_text(json.dumps(card, indent=1)))):
        tmp = path.with_name(f".{path.name}.tmp")
        write(tmp)
        os.replace(tmp, path)
    return weights


def resolve_policy(spec: str) -> Path:
    """A path to a policy (.safetensors, or a .pt torch state dict; its .json card beside it), or the name of a
    policy shipped in `policies/`."""
    path = Path(spec).expanduser()
    if path.suffix not in (".safetensors", ".pt"):
        path = path.with_suffix(".safetensors") if path.suffix in ("", ".json") else path
    if path.is_file():
        return path
    shipped = SHIPPED / f"{Path(spec).stem if Path(spec).suffix in ('.pt', '.safetensors') else spec}.safetensors"
    if shipped.is_file():
        return shipped
    names = sorted(p.stem for p in SHIPPED.glob("*.safetensors"))
    raise UserError(f"policy {spec!r} not found: give a .safetensors or .pt policy file (with its .json card) or a "
                    f"shipped name ({', '.join(names) or 'none yet'}); `ramp search` trains one")


def _read_tensors(path: Path) -> dict:
    import torch
    from safetensors.torch import load_file

    if path.suffix == ".pt":  # weights only: no code runs on load
        tensors = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(tensors, dict) or not all(isinstance(v, torch.Tensor) for v in tensors.values()):
            raise ValueError("not a state dict of tensors")
        return tensors
    return load_file(str(path))


def load_policy_card(spec: str, action_bits=None) -> tuple[dict, dict]:
    """(actor tensors, card) of a policy; a feature, version or action-set mismatch is one clear error."""
    path = resolve_policy(spec)
    try:  # the weights first: a file that is no policy at all should say so, not that its card is missing
        tensors = _read_tensors(path)
    except Exception as exc:
        kind = "a torch state dict" if path.suffix == ".pt" else "a safetensors file"
        raise UserError(f"{path} is not a readable policy: not {kind} of tensors ({exc.__class__.__name__})") from None
    card_path = path.with_suffix(".json")
    if not card_path.is_file():
        raise UserError(f"the policy {path.name} has no card {card_path.name} beside it (the card says what the "
                        "policy was trained on; `ramp search` writes both)")
    try:
        card = json.loads(card_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"cannot read the policy card {card_path} ({exc.__class__.__name__}: {exc})") from None
    if not isinstance(card, dict):
        raise UserError(f"{card_path} is not a policy card (a JSON object)")
    if card.get("format") != POLICY_FORMAT or card.get("format_version") != POLICY_VERSION:
        raise UserError(f"{path} is a policy of format {card.get('format')} v{card.get('format_version')}; "
                        f"this RAMP reads {POLICY_FORMAT} v{POLICY_VERSION}")
    if card.get("reward") == "dynaquant":
        raise UserError(f"{path.name} is a DynaQuant policy: its state comes from fine-tuning the model during the "
                        "episode, so it cannot be applied zero-shot; run `ramp search --algo ppo --reward dynaquant` "
                        "on the target instead")
    if card.get("features") != list(FEATURES):
        raise UserError(f"policy {path.name} was trained on features {card.get('features')}, "
                        f"not RAMP's {len(FEATURES)}-dim embedding")
    if action_bits is not None and list(card.get("action_bits", [])) != list(action_bits):
        raise UserError(f"policy {path.name} chooses among bits {card.get('action_bits')}, "
                        f"but {list(action_bits)} were asked for")
    return tensors, card
