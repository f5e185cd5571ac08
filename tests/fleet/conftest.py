"""Shared by the fleet tests that run in-process on the embedded defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from atelier.settings import Settings


@pytest.fixture
def embedded_settings(tmp_path: Path, models_dir: Path) -> Settings:
    """Settings on the embedded defaults (SQLite and Atelier's own Redis in the test's folder), tiny models."""
    return Settings(
        data_dir=tmp_path / "data",
        tiny_models=True,
        model_cache_dir=models_dir,
        database_url=f"sqlite://{tmp_path}/data/atelier.db",
    )
