"""`ramp search --workers N`: SAC episodes on Ray actors (a local 2-CPU Ray, the tiny model).

One worker reproduces the in-process search exactly; two workers are reproducible, keep every episode in the
replay buffer, and survive a worker killed mid-run (Ray restarts it and the episode runs again).
"""

import json
import threading
import time
from pathlib import Path

import pytest
import ray

from ramp.cli import main as ramp_main
from ramp.engine import checkpoint
from ramp.engine.ray_train import worker_name
from ramp.engine.run import run
from ramputils.errors import run_cli
from tests.conftest import fast_config

LAYERS = 14


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _episodes(out):
    return [(r["episode"], r["bits"], r["ppl"], r["kld"], r["reward"])
            for r in map(json.loads, (Path(out) / "log.jsonl").read_text().splitlines())]


def _answers(summary):
    return {label: (a["ppl"], a["bpw"]) for label, a in summary["allocations"].items()}


def test_one_worker_equals_the_in_process_search(cluster, tiny_llama_dir, tiny_cal, tmp_path):
    local = run(fast_config(tiny_llama_dir, tiny_cal, sac_mode="paper"), tmp_path / "local")
    remote = run(fast_config(tiny_llama_dir, tiny_cal, workers=1, sac_mode="paper"), tmp_path / "ray1")
    assert _episodes(tmp_path / "ray1") == _episodes(tmp_path / "local")
    assert _answers(remote) == _answers(local) and remote["chosen"] == local["chosen"]
    timing = json.loads((tmp_path / "ray1" / "ray.json").read_text())
    assert timing["workers"] == 1 and timing["episodes"] == 6 and 0 <= timing["learner_wait_share"] <= 1


@pytest.fixture(scope="module")
def two_workers(cluster, tiny_llama_dir, tiny_cal, tmp_path_factory):
    """(config, out, summary) of an uninterrupted 8-episode search on two workers."""
    config = fast_config(tiny_llama_dir, tiny_cal, workers=2, episodes=8, sac_mode="paper")
    out = tmp_path_factory.mktemp("ray2") / "straight"
    return config, out, run(config, out)


def test_two_workers_are_reproducible_and_survive_a_killed_worker(two_workers, tmp_path):
    config, straight_out, straight = two_workers
    out, killed = tmp_path / "killed", {}

    def kill_one_worker():
        deadline = time.time() + 300
        while time.time() < deadline and not killed:
            log = out / "log.jsonl"
            if log.exists() and len(log.read_text().splitlines()) >= 3:
                worker = ray.get_actor(worker_name(out, 1))
                killed["pid"] = ray.get(worker.pid.remote())
                ray.kill(worker, no_restart=False)  # as if its process died: Ray restarts it
            time.sleep(0.2)

    killer = threading.Thread(target=kill_one_worker)
    killer.start()
    again = run(config, out)
    killer.join()
    assert killed, "the worker was never killed"
    assert _episodes(out) == _episodes(straight_out)
    assert [e for e, *_ in _episodes(out)] == list(range(8))
    assert _answers(again) == _answers(straight)
    buffer = checkpoint.load(out)["buffer"]
    assert buffer["size"] == 8 * LAYERS  # every episode's transitions reached the learner
    assert json.loads((out / "ray.json").read_text())["workers"] == 2


def test_workers_need_sac(tiny_llama_dir, tiny_cal, tmp_path, capsys):
    argv = ["search", "--model", str(tiny_llama_dir), "--calibration", str(tiny_cal.path), "--algo", "greedy",
            "--workers", "2", "--out", str(tmp_path / "g")]
    assert run_cli(ramp_main, argv) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--workers" in err[0] and "sac" in err[0]


def test_resume_with_episodes_in_flight_is_exact(two_workers, tmp_path, monkeypatch):
    """Stopped right after a checkpoint, with two episodes out on workers, a resumed search ends exactly where an
    uninterrupted one does: the checkpoint holds the weights those episodes were sent."""
    config, straight_out, straight = two_workers
    saves, real_save = [], checkpoint.save

    def save_then_stop(out, state):
        real_save(out, state)
        saves.append(state["in_flight"])
        if len(saves) == 4:
            raise KeyboardInterrupt  # as if killed between episodes
    monkeypatch.setattr(checkpoint, "save", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        run(config, tmp_path / "resumed")
    monkeypatch.setattr(checkpoint, "save", real_save)
    assert len(saves[-1]) == 2 and checkpoint.load(tmp_path / "resumed")["episode"] == 4
    resumed = run(config, tmp_path / "resumed", resume=True)
    assert _episodes(tmp_path / "resumed") == _episodes(straight_out)
    assert _answers(resumed) == _answers(straight)
