"""The Slack rig's fixtures live in `tests.slack.rig`, which the top-level conftest registers for the whole run so
that tests/slack and tests/security share one rig; the names this area's tests import stay importable from here."""

from __future__ import annotations

from tests.slack.rig import (
    APP_TOKEN,
    BOT_TOKEN,
    DATABASE,
    REDIS_DB,
    ROOT,
    SIGNING_SECRET,
    STARTED,
    Process,
    logged,
    rig_process,
    start,
)
from tests.support import redis_url

REDIS_URL = redis_url(REDIS_DB)  # this area's database on the run's Redis

__all__ = [
    "APP_TOKEN",
    "BOT_TOKEN",
    "DATABASE",
    "REDIS_URL",
    "ROOT",
    "SIGNING_SECRET",
    "STARTED",
    "Process",
    "logged",
    "rig_process",
    "start",
]
