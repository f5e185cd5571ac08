"""The rigs the tenant-isolation tests drive, the very ones of their areas: the Discord emulator with the real bot
and worker (`tests.discord.conftest`, started once for this package), and the in-process runtime on the real
services that the LoRA training tests use (`tests.training.conftest`)."""

from __future__ import annotations

from tests.discord.conftest import emulator, services_env, show_logs_on_failure, stack
from tests.training.conftest import dataset_zip, run_worker, runtime, settings

__all__ = [
    "dataset_zip",
    "emulator",
    "run_worker",
    "runtime",
    "services_env",
    "settings",
    "show_logs_on_failure",
    "stack",
]
