"""The options of `ramp search` (and the evaluation windows of `transfer` and `evaluate`), from the config fields.

Every `option(...)` field of `SearchConfig` and its sections is one option: `--eval-samples` on the command line
is `eval_samples=` in `ramp.search(...)`, `--no-imatrix` is `imatrix=False`.  argparse only collects text
(`add_arguments`); `search_config` reads and checks the values, fills the defaults that depend on the mode
(actions, DynaQuant's PPO settings) and refuses combinations that would be silently ignored, so the CLI and
the API fail with the same one-line message.  `check` holds the rules every configuration must satisfy; the
search runs it again before any work.
"""

import argparse
from dataclasses import MISSING, fields, is_dataclass, replace

from ramputils.errors import UserError

from .agents import PPOConfig
from .dynaquant import FORMATS, check_format
from .search import DEFAULT_ACTIONS, BudgetOptions, EvalWindows, SearchConfig

# DynaQuant's loop pays a reward every step and updates after every episode (its paper's settings)
DYNAQUANT_PPO = {"gamma": 0.99, "lam": 0.95, "episodes_per_update": 1}
# what reads a section or an option, when not every search does: given to a search that ignores it, it is refused
USED_BY = {
    "sac": (lambda c: c.algo == "sac", "a SAC setting: use it with --algo sac"),
    "credit": (lambda c: c.algo == "sac", "a SAC setting: use it with --algo sac"),
    "ppo": (lambda c: c.algo == "ppo", "a PPO setting: use it with --algo ppo"),
    "dynaquant": (lambda c: c.reward == "dynaquant", "a DynaQuant setting: use it with --reward dynaquant"),
    "budget": (lambda c: c.reward != "dynaquant", "not for --reward dynaquant, whose reward prices memory itself"),
    "budget_mode": (lambda c: c.reward != "dynaquant", "not for --reward dynaquant, whose reward prices memory itself"),
    "quality": (lambda c: c.reward != "dynaquant", "not for --reward dynaquant, which has its own reward terms"),
    "ray_address": (lambda c: c.workers > 0, "for Ray workers: use it with --workers N"),
    "sensitivity": (lambda c: c.algo in ("knapsack", "evo") or guided(c),
                    "a knapsack setting: use it with --algo knapsack, evo or sac (guided)"),
    "fisher_samples": (lambda c: (c.algo in ("knapsack", "evo") or guided(c)) and c.sensitivity == "fisher",
                       "a Fisher setting: use it with --sensitivity fisher and --algo knapsack, evo or sac (guided)"),
    "evo": (lambda c: c.algo == "evo", "an evolution setting: use it with --algo evo"),
    "confirm_samples": (lambda c: c.algo == "evo" or guided(c), "the confirmation split of --algo evo and sac (guided)"),
    "confirm_margin": (lambda c: c.algo == "evo" or guided(c), "the confirmation split of --algo evo and sac (guided)"),
    "guide_scale": (lambda c: guided(c), "a guided-SAC setting: use it with --algo sac (--sac-mode guided)"),
}
# what only the paper's SAC reads: refused in the guided mode, which never pays eq. 19-20 and is budget-exact
PAPER_ONLY = ("reward", "budget_mode", "credit", "ceiling", "workers")


def guided(config) -> bool:
    """The default SAC search: a knapsack decodes every episode's allocation (ramp.engine.guided_train)."""
    return config.algo == "sac" and config.sac.mode == "guided" and config.reward != "dynaquant"


def option_table(cls=SearchConfig) -> dict:
    """{option name: (section name or None, field)} of every exposed field of `cls` and its sections."""
    table = {}
    for f in fields(cls):
        if f.default_factory is not MISSING and is_dataclass(f.default_factory):
            for sub in fields(f.default_factory):
                if "option" in sub.metadata:
                    table[_name(sub)] = (f.name, sub)
        elif "option" in f.metadata:
            table[_name(f)] = (None, f)
    return table


def _name(f) -> str:
    return f.metadata["option"]["name"] or f.name


def flag(name: str, table: dict | None = None) -> str:
    """The command-line spelling of option `name`."""
    f = (table or option_table())[name][1]
    meta = f.metadata["option"]
    if meta["flag"]:
        return meta["flag"]
    dashed = name.replace("_", "-")
    return f"--no-{dashed}" if f.default is True else f"--{dashed}"


def add_arguments(parser: argparse.ArgumentParser, names=None, cls=SearchConfig) -> None:
    """One argparse option per exposed field (all, or those in `names`), collecting text; unset options stay
    unset (argparse.SUPPRESS), so the defaults live in the dataclasses only."""
    table = option_table(cls)
    for name, (_, f) in table.items():
        if names is not None and name not in names:
            continue
        meta = f.metadata["option"]
        text = meta["help"]
        if f.default is not None and not isinstance(f.default, bool) and name != "model":
            shown = ",".join(map(str, f.default)) if isinstance(f.default, tuple) else f.default
            text += f" (default {shown})"
        kwargs = {"dest": name, "default": argparse.SUPPRESS, "help": text}
        if isinstance(f.default, bool):
            kwargs["action"] = "store_false" if f.default else "store_true"
        else:
            kwargs["metavar"] = name.upper() if not meta["choices"] else "{" + ",".join(meta["choices"]) + "}"
        parser.add_argument(flag(name, table), **kwargs)


def read(name: str, value, table: dict | None = None):
    """Option `name`'s value as its field holds it, from text (the CLI) or a Python value (the API)."""
    table = table or option_table()
    f = table[name][1]
    meta, where = f.metadata["option"], flag(name, table)
    if isinstance(f.default, bool):
        if not isinstance(value, bool):
            raise UserError(f"{where} is a switch: give True or False, got {value!r}")
        return value
    if value is None:
        return None
    parse = meta["parse"] or type(f.default)
    if parse is str:
        value = str(value)
    elif parse in (int, float):
        if isinstance(value, str):
            try:
                value = parse(value)
            except ValueError:
                raise UserError(f"{where} must be {'a whole number' if parse is int else 'a number'}, "
                                f"got {value}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (parse is int and value != int(value)):
            raise UserError(f"{where} must be {'a whole number' if parse is int else 'a number'}, got {value}")
        value = parse(value)
    else:
        try:
            value = parse(value)
        except UserError as exc:
            message = str(exc)
            raise UserError(message if message.startswith("--") else f"{where}: {message}") from None
    if meta["positive"] and value < 1:
        raise UserError(f"{where} must be at least 1, got {value}")
    if meta["choices"] and value not in meta["choices"]:
        raise UserError(f"unknown {where} {value!r}; use one of {', '.join(meta['choices'])}")
    return value


def read_actions(value, reward: str) -> tuple:
    """Bit widths (`3,4,5,6` or a sequence of ints), or bitsandbytes formats in DynaQuant's mode."""
    if value is None:
        return FORMATS if reward == "dynaquant" else DEFAULT_ACTIONS
    parts = value.split(",") if isinstance(value, str) else list(value)
    if reward == "dynaquant":
        return tuple(check_format(p) for p in parts)
    try:
        return tuple(int(p) for p in parts)
    except (TypeError, ValueError):
        raise UserError(f"--actions must be comma-separated bit widths, got {value!r}") from None


def _section(cls, section: str, options: dict):
    """`cls` built from the given options (None: its default) of `SearchConfig`'s `section`, read as the search's."""
    table = option_table()
    values = {table[name][1].name: read(name, value, table) for name, value in options.items() if value is not None}
    assert all(table[name][0] == section for name in options), options
    return cls(**values)


def eval_windows(**options) -> EvalWindows:
    """`EvalWindows` of `eval_samples=`, `eval_seq_len=` (None: the default), for transfer and evaluate."""
    return _section(EvalWindows, "windows", options)


def budget_options(**options) -> BudgetOptions:
    """`BudgetOptions` of `budget=`, `ceiling=`, `nominal_bits=` (None: the default), for transfer."""
    return _section(BudgetOptions, "budget", options)


def search_config(**options) -> SearchConfig:
    """The checked `SearchConfig` of `ramp search`'s options (CLI flags with underscores, or API keywords)."""
    table = option_table()
    unknown = sorted(set(options) - set(table))
    if unknown:
        raise UserError(f"unknown search option {unknown[0]!r}; the options are {', '.join(sorted(table))}")
    values = {name: read(name, value, table) for name, value in options.items() if name != "actions"}
    top = {table[n][1].name: v for n, v in values.items() if table[n][0] is None}
    config = SearchConfig(**top)
    config.ppo = PPOConfig(**DYNAQUANT_PPO) if config.reward == "dynaquant" else PPOConfig()
    config.actions = read_actions(options.get("actions"), config.reward)
    for name, value in values.items():
        section = table[name][0]
        if section is not None:
            setattr(config, section, replace(getattr(config, section), **{table[name][1].name: value}))
    for name in values:
        used, message = USED_BY.get(name) or USED_BY.get(table[name][0] or name, (lambda c: True, ""))
        if not used(config):
            got = f"--algo {config.algo}" + (", --reward dynaquant" if config.reward == "dynaquant" else "")
            raise UserError(f"{flag(name, table)} is {message} (got {got})")
        if guided(config) and name in PAPER_ONLY:
            raise UserError(f"{flag(name, table)} is a setting of the paper's SAC search: add --sac-mode paper "
                            "(the guided default ends every episode exactly within the budget on the joint KL)")
    if (config.algo == "evo" or guided(config)) and "quality" not in options:
        config.quality = "kld"   # search on the joint KL: the quality signal the knapsack's table estimates
    if config.reward == "dynaquant":
        config.dynaquant = replace(config.dynaquant, formats=config.actions)
    check(config)
    return config


def check(config: SearchConfig) -> None:
    """Refuse what cannot run as asked (an unknown name, an option the chosen method would ignore)."""
    table = option_table()
    for name, (section, f) in table.items():  # every field with choices: --algo, --reward, --quality, ...
        choices = f.metadata["option"]["choices"]
        value = getattr(getattr(config, section) if section else config, f.name)
        if choices and value not in choices:
            raise UserError(f"unknown {flag(name, table)} {value!r}; use one of {', '.join(choices)}")
    if config.reward == "dynaquant" and config.algo != "ppo":
        raise UserError(f"--reward dynaquant is DynaQuant's PPO mode: use --algo ppo (got --algo {config.algo})")
    if config.workers and (config.algo != "sac" or config.reward == "dynaquant"):
        raise UserError(f"--workers N runs SAC episodes on Ray; use it with --algo sac (got --algo {config.algo})")
    if not config.sac.guide_scale > 0:
        raise UserError(f"--guide-scale must be above 0, got {config.sac.guide_scale}")
    if guided(config) and config.workers:
        raise UserError("--workers N runs the paper's SAC episodes on Ray: add --sac-mode paper")
    if config.episodes < 1:
        raise UserError("--episodes must be at least 1")
    if len(set(config.actions)) != len(config.actions) or len(config.actions) < 2:
        what = "formats" if config.reward == "dynaquant" else "bit widths"
        raise UserError(f"--actions needs at least two distinct {what}, got {list(config.actions)}")
    if config.reward == "dynaquant":
        if config.dynaquant.formats != tuple(config.actions):
            raise UserError("the DynaQuant formats must be the --actions")
    elif not all(isinstance(b, int) for b in config.actions):
        raise UserError(f"--actions must be bit widths, got {list(config.actions)}")
