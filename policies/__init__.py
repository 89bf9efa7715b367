"""Trained RAMP policy checkpoints shipped with the package (package data), loadable by name."""
