"""Where the offline data lives.

The evaluation and calibration files ship beside the project in `../shared/data` (relative to the
repository root).  `RAMP_DATA_DIR` overrides that; the current directory's `../shared/data` and
`./shared/data` are tried next so an installed package works from a checkout.
"""

import os
from pathlib import Path

from ramputils.errors import UserError

_REPO_ROOT = Path(__file__).resolve().parent.parent


def data_dir() -> Path:
    """The folder holding `wikitext-2/` and `tasks/`."""
    env = os.environ.get("RAMP_DATA_DIR")
    candidates = [Path(env)] if env else []
    candidates += [_REPO_ROOT.parent / "shared" / "data", Path.cwd().parent / "shared" / "data",
                   Path.cwd() / "shared" / "data"]
    for path in candidates:
        if (path / "wikitext-2").is_dir():
            return path
    raise UserError("offline data not found: set RAMP_DATA_DIR to the folder holding wikitext-2/ "
                    f"(looked in {', '.join(str(p) for p in candidates)})")


def wikitext2(split: str) -> Path:
    """WikiText-2: `valid` (the `.tokens` file, calibration and search) or `test` (the raw file, evaluation)."""
    names = {"valid": "wiki.valid.tokens", "test": "wiki.test.raw"}
    if split not in names:
        raise UserError(f"unknown WikiText-2 split {split!r}; use one of {sorted(names)}")
    return data_dir() / "wikitext-2" / names[split]
