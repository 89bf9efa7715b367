"""The behaviour policy of one SAC episode: what picks its actions while it is rolled out.

Every episode draws from its own random stream, seeded by (search seed, episode number) alone, and acts
with a CPU copy of the actor weights it is handed.  An episode's actions therefore depend on those weights
and two numbers only — not on how many gradient steps the learner has taken, nor on which process rolls it
out.  That is what makes a search on Ray workers (`ramp.ray_search`) reproducible for a given number of
workers and, with one worker, identical to the in-process loop (`ramp.sac_loop`), which uses the same
function.  Warm-up episodes (no weights) act uniformly in [-1, 1]; later ones sample the tanh-Gaussian actor.
"""

from collections.abc import Callable

import numpy as np
import torch

from .sac import load_policy


def episode_generator(seed: int, episode: int) -> torch.Generator:
    """A CPU generator for episode `episode` of the search seeded `seed`, independent of every other episode's."""
    generator = torch.Generator()
    generator.manual_seed(int(np.random.SeedSequence([int(seed), int(episode)]).generate_state(1, np.uint64)[0]))
    return generator


def behaviour(actor_state: dict | None, seed: int, episode: int, log_std_min: float = -5.0,
              log_std_max: float = 2.0) -> Callable[[np.ndarray], float]:
    """`act(obs) -> action in [-1, 1]` for one episode: uniform when `actor_state` is None (warm-up), else a
    sample of the actor `SAC.policy_state_dict()` describes."""
    generator = episode_generator(seed, episode)
    if actor_state is None:
        return lambda obs: float(2 * torch.rand((), generator=generator, dtype=torch.float64) - 1)
    actor = load_policy(actor_state, "cpu", log_std_min, log_std_max)

    def act(obs: np.ndarray) -> float:
        x = torch.as_tensor(np.asarray(obs, dtype=np.float32)).reshape(1, -1)
        with torch.no_grad():
            return float(actor.sample(x, generator)[0][0])

    return act
