"""`atelier admin` and `atelier imagine --tenant --user` as an admin runs them: real subprocesses."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from storage.models import Tenant
from storage.quota_models import QuotaLedger
from tests.support import run_atelier


@pytest.mark.slow
async def test_the_fourth_image_over_a_limit_of_three_is_refused_naming_limit_usage_and_reset(
    runtime, env: dict[str, str], tmp_path: Path
) -> None:
    set_limit = run_atelier("admin", "quota", "discord:1", "--images-per-day", "3", env=env, cwd=tmp_path)
    assert set_limit.returncode == 0, set_limit.stderr
    assert "images-per-day: 3 (override)" in set_limit.stdout
    assert "tier free" in set_limit.stdout  # a Discord guild first seen by an admin starts on the free tier

    imagine = ("imagine", "a quiet harbour", "--tenant", "discord:1", "--user", "2", "--steps", "1")
    for i in range(3):
        result = run_atelier(*imagine, "--out", f"out{i}", env=env, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert (tmp_path / result.stdout.split()[-1]).exists()

    refused = run_atelier(*imagine, env=env, cwd=tmp_path)
    assert refused.returncode == 3 and refused.stdout == ""
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1, refused.stderr
    assert re.fullmatch(
        r"atelier: refused: Limit reached: images per day \(3 of 3 used\); it resets at \d{4}-\d\d-\d\d 00:00 UTC\.",
        lines[0],
    ), lines[0]
    tenant = await Tenant.get(platform="discord", external_id="1")
    assert sum(await QuotaLedger.filter(tenant=tenant).values_list("images", flat=True)) == 3

    usage = run_atelier("admin", "usage", "discord:1", env=env, cwd=tmp_path)
    assert usage.returncode == 0 and "3 images" in usage.stdout and "2: 3 images" in usage.stdout, (
        usage.stdout
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["quota", "discord:1", "--images-per-day", "-1"], "images-per-day must be 0 or more (got -1)"),
        (["quota", "discord:1", "--images-per-day", "2.5"], "images-per-day must be a whole number"),
        (["quota", "discord:1", "--concurrent-jobs", "many"], "concurrent-jobs must be a whole number"),
        (["quota", "discord:1", "--clear", "images"], "unknown limit 'images'"),
        (["quota", "discord:1", "--timezone", "Mars/Olympus"], "unknown timezone 'Mars/Olympus'"),
        (["tier", "discord:1", "gold"], "unknown tier 'gold': choose one of free, standard, priority"),
        (["tier", "irc:1", "free"], "a tenant looks like PLATFORM:ID"),
        (["safety", "discord:1", "maybe"], "the safety filter is on or off (got 'maybe')"),
        (["emoji", "discord:1", "upscale"], "give the emoji for upscale, or --reset"),
        (["emoji", "discord:1", "--reset"], "name the reaction to set"),
        (["emoji", "discord:1", "zoom", "🔎"], "unknown reaction 'zoom': choose upscale or faces"),
    ],
)
async def test_bad_admin_input_is_one_clear_line_and_changes_nothing(
    runtime, env: dict[str, str], tmp_path: Path, args: list[str], message: str
) -> None:
    result = run_atelier("admin", *args, env=env, cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("atelier: error:") and message in lines[0], result.stderr
    assert await Tenant.all().count() == 0  # checked before any service opened: no tenant was created


async def test_imagine_with_a_malformed_tenant_is_refused_before_anything_starts(env, tmp_path: Path) -> None:
    result = run_atelier("imagine", "a fox", "--tenant", "discord", env=env, cwd=tmp_path)
    assert result.returncode == 2 and "PLATFORM:ID" in result.stderr
