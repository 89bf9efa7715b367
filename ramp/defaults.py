"""Defaults shared by the search, transfer, evaluate and the CLI (no heavy imports: the CLI reads them for --help).

The held-out evaluation of an episode: 4 windows x 256 tokens from the evaluation part of the
validation split.  One forward pass over them takes ~1.7 s on 2 CPU cores for the default model;
with 64 SAC updates per episode (~1.9 s single-threaded) that keeps calibration + 200 episodes +
export + llama.cpp evaluation near 20 minutes there.  More windows cost time and lower the noise.
"""

EVAL_SAMPLES = 4
EVAL_SEQ_LEN = 256
UPDATES_PER_EPISODE = 64
