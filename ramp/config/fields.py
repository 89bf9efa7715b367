"""`option(...)`: a dataclass field that `ramp`'s command line and Python API both expose.

The field keeps its default (written once, here) and carries its help text and how a value given as text is
read.  `ramp.config.options` turns every such field into an argparse option and checks the values the API is
given the same way, so `ramp search --episodes 0` and `ramp.search(episodes=0)` fail with one message.
"""

from dataclasses import field


def option(default, help: str, *, name: str | None = None, flag: str | None = None, parse=None,
           choices: tuple | None = None, positive: bool = False):
    """A field exposed as `--flag` (default: `--` + the option name with dashes) and keyword `name` (default: the
    field's own name).  `parse(text)` reads a value given as text (default: the type of `default`); `choices`
    lists the allowed values; `positive` refuses numbers below 1.  A bool that defaults to True is exposed as a
    `--no-...` switch."""
    meta = {"help": help, "name": name, "flag": flag, "parse": parse, "choices": choices, "positive": positive}
    return field(default=default, metadata={"option": meta})
