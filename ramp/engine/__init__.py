"""The search engine behind `ramp search`: the context every method works in, one episode loop the learners plug
into (SAC, PPO, SAC on Ray; DynaQuant's from `ramp.dynaquant`), the baselines (knapsack, evo, uniform), the outputs
(allocations, summary, plots), the log and the checkpoint.  `run.run` dispatches a configuration to its method."""
