"""Fixtures every test area shares: the real services (see fixtures_services) and one tiny-model cache, and the
run's own Redis server (tests.support.redis_url), stopped when the run ends."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import stop_run_redis

pytest_plugins = ["tests.fixtures_services", "tests.slack.rig"]


def pytest_unconfigure(config: pytest.Config) -> None:
    stop_run_redis()


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One model cache for the whole session: tiny presets are built into it once, then loaded from disk."""
    return tmp_path_factory.mktemp("models")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Keep the call phase's report on the item (`item.rep_call`), for fixtures that show logs on failure."""
    report = yield
    if report.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]
    return report
