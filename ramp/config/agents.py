"""The agents' hyperparameters (SAC, PPO): plain dataclasses, so the command line reads them without torch."""

from dataclasses import dataclass

from .fields import option


@dataclass
class SACConfig:
    """SAC hyperparameters; the defaults are RAMP's (tables 25-27)."""

    mode: str = option("guided", "guided: SAC adjusts each layer's sensitivity and a knapsack decodes an allocation "
                                 "exactly within the budget, episode 0 being the knapsack's (ramp.engine.guided_train);"
                                 " paper: RAMP's eq. 19-20 search, one width per layer step", name="sac_mode",
                       choices=("guided", "paper"))
    """The SAC search: "guided" (the default, an extension of the paper: budget-exact episodes on the joint KL,
    warm-started from the knapsack) or "paper" (RAMP's MDP and reward as published, for its claims)."""
    guide_scale: float = option(1.0, "guided SAC: how far an action of +-1 scales a layer's sensitivity (by "
                                     "exp(+-scale))", parse=float)
    """kappa: the action a in [-1, 1] multiplies the layer's sensitivity row by exp(kappa a) before the knapsack."""

    hidden: tuple[int, ...] = (512, 512, 256)
    """Hidden widths of actor and each critic; LayerNorm follows every hidden layer but the last (table 27)."""
    gamma: float = 0.99
    """Discount factor."""
    tau: float = 0.005
    """Polyak rate of the target critics: target <- (1 - tau) target + tau online, after every update."""
    lr: float = 3e-4
    """Adam learning rate, shared by the actor, the critics and the temperature."""
    batch_size: int = 128
    """Transitions per gradient step."""
    buffer_capacity: int = 30_000
    """Replay buffer size in transitions (about 120 episodes of 250 layers)."""
    target_entropy: float = -1.0
    """Entropy the temperature tuning steers the policy to: -(action dimension) = -1."""
    init_alpha: float = 0.2
    """Initial temperature alpha; it is learned as log alpha."""
    grad_clip: float = 1.0
    """Max gradient norm of the actor and of the critics (together) per step."""
    log_std_min: float = -5.0
    """Lower bound of the actor's log std (the head's output is squashed into [min, max])."""
    log_std_max: float = 2.0
    """Upper bound of the actor's log std."""
    warmup_episodes: int = option(20, "SAC episodes of uniform random actions before the policy acts and learns")
    """Episodes of uniform random actions before the policy acts and updates start."""
    updates_per_episode: int | None = option(64, "SAC gradient steps after each episode", positive=True)
    """Gradient steps after each episode (64 keeps a 200-episode search on the default model near 20 minutes on
    2 CPU cores).  None: one per transition the episode stored, i.e. the number of layers — SAC's usual one
    update per environment step.  Evaluating an allocation costs far
    more than an update, so a higher ratio is affordable; with a sparse terminal reward, though, the critics'
    targets move by tau per step, so more updates mostly buy faster value propagation at the risk of fitting
    the few episodes seen so far."""
    device: str = "cpu"
    """Torch device of the networks ("cpu", "cuda")."""


@dataclass
class PPOConfig:
    """PPO hyperparameters: CleanRL's defaults where RAMP says nothing, except gamma, lam and episodes_per_update,
    which RAMP's once-per-episode reward needs (DynaQuant's loop sets its own: 0.99, 0.95, 1)."""

    hidden: tuple[int, ...] = (64, 64)
    """Hidden widths of the actor and of the critic (tanh activations)."""
    lr: float = 3e-4
    """Adam learning rate of actor and critic."""
    gamma: float = 1.0
    """Discount.  1.0 for RAMP's reward, paid once at the end of an episode (discounting would only shrink the
    early layers' credit); DynaQuant's per-step reward uses 0.99."""
    lam: float = 1.0
    """GAE lambda.  1.0 for RAMP's reward: A_t = R - V(s_t), every layer credited with its episode's outcome (SAC's
    `--credit episode`); with 0.95 the reward reaches a layer 200 steps before the end scaled by 0.95^200 = 4e-5,
    leaving it to a critic that sees earlier layers only as their mean bits.  DynaQuant (per-step reward): 0.95."""
    clip: float = 0.2
    """Clip range of the probability ratio."""
    epochs: int = 4
    """Passes over the collected transitions per update."""
    minibatch: int = 64
    """Transitions per gradient step."""
    ent_coef: float = 0.01
    """Weight of the entropy bonus."""
    vf_coef: float = 0.5
    """Weight of the value loss."""
    max_grad_norm: float = 0.5
    """Max gradient norm of actor and critic together per step."""
    episodes_per_update: int = option(8, "--algo ppo: episodes collected per PPO update (1 with --reward dynaquant)",
                                      name="ppo_batch", positive=True)
    """Episodes collected with the current policy before each update.  RAMP's reward comes once per episode, so
    the advantages only compare allocations across the episodes of a batch: with one episode per update the
    policy gets no signal beyond its critic's.  DynaQuant (a reward every step, episodes of 35 CPU-min) uses 1."""
    device: str = "cpu"
    """Torch device of the networks."""


@dataclass
class EvoConfig:
    """The (1 + lambda) evolution of `--algo evo` (ramp.engine.evo): its evaluations are `--episodes`, so it gets
    exactly the evaluations SAC gets."""

    offspring: int = option(4, "evo: mutated children of the parent per generation", name="evo_offspring",
                            positive=True)
    """Children per generation (lambda); the best of parent and children is the next parent."""
    raises: int = option(2, "evo: layers a mutation raises by one width (others are lowered until it fits)",
                         name="evo_raises", positive=True)
    """Layers raised one width per mutation; then random other layers are lowered one width until the allocation
    is within the budget again (EvoPress's level switch, for layers of unequal sizes)."""
    finalists: int = option(4, "evo: best distinct allocations re-scored on the confirmation split",
                            name="evo_finalists", positive=True)
    """How many of the lowest-loss allocations seen (the start included) the confirmation split chooses among."""
