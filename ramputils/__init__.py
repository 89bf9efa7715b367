"""Utilities shared by `calibration`, `halo` and `ramp`: the one-line error, atomic writes, content hashes, the
one-line argparse parser and the installed version.  It imports none of the three packages."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ramp-quant")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"
