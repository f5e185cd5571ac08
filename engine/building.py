"""Building and loading models while other threads of the process do the same.

Two things are process-wide, not per thread:
- transformers' `from_pretrained` swaps functions for as long as it runs (`PreTrainedModel.tie_weights` and
  `init_weights`, and torch.nn.init's functions: transformers.initialization's `no_tie_weights` and
  `no_init_weights`) and puts back what it found when it ends. Two loads on two threads at once can leave the
  swapped ones in place for good: every later T5 had its embeddings untied (a tiny Flux pipeline then failed
  to load: "Cannot copy out of meta tensor") and later weights were left uninitialised. diffusers calls it for
  every text encoder and safety checker.
- Weight initialisation (a tiny preset built from its config, a LoRA's starting weights) draws from torch's one
  global CPU generator, so "the same seed gives the same weights" holds only while no other thread draws.

A worker loads on several threads (a job's pipeline on the engine's thread, the prompt classifier on its own:
jobs.prompt_check), so every load and every seeded build holds one re-entrant lock (`exclusive`, `seeded`):
loads run one at a time in a process. Inference needs neither: it draws from a `torch.Generator` of its own.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch

_LOCK = threading.RLock()


@contextmanager
def exclusive() -> Iterator[None]:
    """Load or build models in the block alone among this process's threads."""
    with _LOCK:
        yield


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run the block alone (`exclusive`) on the global CPU generator seeded with `seed`; the caller's random
    state is restored after."""
    with _LOCK, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
