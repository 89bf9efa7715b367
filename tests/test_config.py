"""The typed configuration: the CLI's options come from the config fields, the API takes the same names, and both
refuse the same bad values and combinations with the same one-line message, before any work."""

import json
from dataclasses import asdict

import pytest

from ramp.cli import build_parser
from ramp.config.agents import PPOConfig, SACConfig
from ramp.config.options import DYNAQUANT_PPO, flag, option_table, search_config
from ramp.config.search import SearchConfig
from ramputils.errors import UserError, run_cli


def _parse(*argv):
    args = vars(build_parser().parse_args(["search", "--out", "x", *argv]))
    return {k: v for k, v in args.items() if k not in ("command", "out", "resume", "export")}


def test_every_option_is_a_flag_and_unset_flags_take_the_dataclass_defaults():
    table = option_table()
    parser_flags = {a for action in build_parser()._subparsers._group_actions[0].choices["search"]._actions
                    for a in action.option_strings}
    assert {flag(name) for name in table} <= parser_flags
    assert _parse() == {}                                     # argparse holds no defaults of its own
    config = search_config(**_parse())
    assert config.sac == SACConfig() and config.ppo == PPOConfig() and config.actions == (3, 4, 5, 6)
    assert config.windows.samples == 4 and config.windows.seq_len == 256 and config.sac.warmup_episodes == 20


def test_cli_and_api_build_the_same_config():
    argv = ["--algo", "ppo", "--ppo-batch", "3", "--eval-samples", "6", "--budget", "4.25", "--no-imatrix",
            "--actions", "3,4,8", "--max-memory", "2GB", "--seed", "7"]
    from_cli = search_config(**_parse(*argv))
    from_api = search_config(algo="ppo", ppo_batch=3, eval_samples=6, budget=4.25, imatrix=False, actions=[3, 4, 8],
                             max_memory="2GB", seed=7)
    assert from_cli == from_api
    assert from_cli.ppo.episodes_per_update == 3 and from_cli.windows.samples == 6 and from_cli.budget.budget == 4.25
    assert from_cli.max_memory == 2 * 10**9 and from_cli.actions == (3, 4, 8) and not from_cli.imatrix


def test_config_json_round_trip():
    config = search_config(reward="dynaquant", algo="ppo", granularity="layer", ft_steps=3, actions="nf4,int8")
    back = SearchConfig.from_json(json.loads(json.dumps(config.to_json())))
    assert back == config and back.dynaquant.formats == ("nf4", "int8") and back.actions == ("nf4", "int8")
    assert asdict(back.ppo) == asdict(PPOConfig(**DYNAQUANT_PPO))   # DynaQuant's own PPO settings
    with pytest.raises(UserError, match="older ramp"):
        SearchConfig.from_json({"model": "default", "extra": {}, "eval_samples": 4})


@pytest.mark.parametrize("options, message", [
    ({"reward": "dynaquant"}, "--reward dynaquant is DynaQuant's PPO mode: use --algo ppo (got --algo sac)"),
    ({"ppo_batch": 4}, "--ppo-batch is a PPO setting: use it with --algo ppo (got --algo sac)"),
    ({"algo": "greedy", "warmup_episodes": 5}, "--warmup-episodes is a SAC setting: use it with --algo sac"),
    ({"ft_steps": 3, "algo": "ppo"}, "--ft-steps is a DynaQuant setting: use it with --reward dynaquant"),
    ({"algo": "ppo", "reward": "dynaquant", "budget": 4.0}, "--budget is not for --reward dynaquant"),
    ({"ray_address": "ray://head:10001"}, "--ray-address is for Ray workers: use it with --workers N"),
    ({"algo": "ppo", "workers": 2}, "--workers N runs SAC episodes on Ray; use it with --algo sac"),
    ({"episodes": 0}, "--episodes must be at least 1, got 0"),
    ({"budget": "lots"}, "--budget: expected a number, got 'lots'"),
    ({"eval_samples": 2.5}, "--eval-samples must be a whole number, got 2.5"),
    ({"quality": "accuracy"}, "unknown --quality 'accuracy'; use one of ppl, kld"),
    ({"actions": "3,3"}, "--actions needs at least two distinct bit widths, got [3, 3]"),
    ({"algo": "ppo", "reward": "dynaquant", "actions": "nf4,nf5"}, "unknown weight format 'nf5'"),
    ({"algo": "ppo", "reward": "dynaquant", "ft_lr": 0}, "--ft-lr must be positive"),
])
def test_api_and_cli_refuse_the_same_way(options, message, tmp_path, capsys):
    """The API raises the very line the CLI prints, and neither leaves an output folder."""
    import ramp

    with pytest.raises(UserError) as err:
        ramp.search("default", tmp_path / "api", **options)
    assert message in str(err.value)
    argv = ["search", "--out", str(tmp_path / "cli")]
    for name, value in options.items():
        if isinstance(value, bool):
            continue
        argv += [flag(name), ",".join(map(str, value)) if isinstance(value, list) else str(value)]
    from ramp.cli import main

    assert run_cli(main, argv) == 2
    err_lines = capsys.readouterr().err.strip().splitlines()
    assert err_lines == [f"error: {err.value}"]
    assert not (tmp_path / "api").exists() and not (tmp_path / "cli").exists()


def test_unknown_api_option_is_named():
    with pytest.raises(UserError, match="unknown search option 'eval_windows'"):
        search_config(eval_windows=8)
