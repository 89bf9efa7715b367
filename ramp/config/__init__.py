"""Typed settings, one dataclass per concern, each default written once (no torch: the CLI reads them for --help).

`search.SearchConfig` (with `search.EvalWindows`, `search.BudgetOptions`), `agents.SACConfig`, `agents.PPOConfig`,
`dynaquant.DQConfig`; `options` turns their `option(...)` fields into the command line's options and the API's
keywords and checks both the same way.
"""
