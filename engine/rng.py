"""Seeded use of torch's global CPU random generator, which every thread of a process shares.

Weight initialisation (a tiny preset built from its config, a LoRA's starting weights) draws from that global
generator, so "the same seed gives the same weights" holds only while no other thread draws meanwhile. A worker
builds on several threads at once (the job's pipeline on one, the prompt classifier on its own: jobs.prompt_check),
so each seeded section holds `_LOCK`: sections run one at a time, each from its own seed. Inference never needs
it: it draws from a `torch.Generator` of its own per image (engine.generate).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch

_LOCK = threading.Lock()


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run the block on the global CPU generator seeded with `seed`, alone among this process's seeded blocks;
    the caller's random state is restored after."""
    with _LOCK, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
