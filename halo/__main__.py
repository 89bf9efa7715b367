from halo.cli import entry

entry()
