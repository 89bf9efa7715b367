from ramp.cli import entry

entry()
