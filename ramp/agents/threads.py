"""Gradient updates single-threaded on the CPU: the networks are small, and on a few cores thread hand-offs cost
more than they save (SAC: measured 30-45 ms per step on one thread, far more on two busy ones)."""

from contextlib import contextmanager

import torch


@contextmanager
def single_thread(device: torch.device):
    """One intra-op thread while inside, on a CPU device; the previous count is restored on the way out."""
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
