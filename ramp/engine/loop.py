"""The one episode loop of every learning search: resume, run episodes, log, checkpoint — over a `Learner`.

A learner (SAC, PPO, SAC on Ray workers, DynaQuant's PPO) says what one episode is; the loop owns everything
around it, the same for all of them: the checkpoint is read back on resume and handed to the learner, log.jsonl
is cut back to the checkpoint, each episode's log line is appended and a checkpoint (the learner's state and the
episode count) is written after every episode, so a killed search resumes where it stopped and ends exactly
where an uninterrupted one would.
"""

from pathlib import Path
from typing import Protocol

from tqdm.auto import tqdm

from . import checkpoint, log


class Learner(Protocol):
    desc: str
    """Progress-bar label."""

    def restore(self, state: dict | None) -> None:
        """Start fresh (None) or from a checkpoint's state."""

    def episode(self, index: int) -> dict:
        """Run episode `index` (act, score, learn) and return its log.jsonl record."""

    def state(self) -> dict:
        """Everything the checkpoint must hold to resume after this episode (the loop adds the episode count)."""

    def postfix(self, record: dict) -> dict:
        """Progress-bar fields for an episode's record."""


def run_episodes(out: Path, episodes: int, learner: Learner, resume: bool, checkpoint_every: int = 1) -> int:
    """Episodes up to `episodes`, from the checkpoint in `out` when `resume`; returns the first episode run.

    The checkpoint is written after every `checkpoint_every`-th episode and after the last (1, the default: an
    episode of a real model costs seconds, a checkpoint a fraction of one; a problem whose episodes take
    milliseconds checkpoints less often and, on resume, repeats the episodes since)."""
    state = checkpoint.load(out) if resume else None
    learner.restore(state)
    start = int(state["episode"]) if state is not None else 0
    log.reset(out, start if state is not None else None)
    if state is not None:
        tqdm.write(f"resuming at episode {start} of {episodes}")
    with tqdm(range(start, episodes), initial=start, total=episodes, desc=learner.desc, unit="ep") as bar:
        for index in bar:
            record = learner.episode(index)
            log.append(out, record)
            if (index + 1) % checkpoint_every == 0 or index + 1 == episodes:
                checkpoint.save(out, learner.state() | {"episode": index + 1})
            bar.set_postfix(learner.postfix(record))
    return start
