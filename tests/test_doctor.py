"""`atelier doctor` as a subprocess against real services: Redis, SQLite, PostgreSQL, a local blob folder, and the
Discord and Slack emulators of the test suite for the tokens.

Each run imports torch for the device row (a few seconds), so the cases are few and each checks several rows.
The weights row and the S3 blob store are checked in-process: against what the engine builds, and moto's server.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg

from atelier.doctor import check_blobs, check_weights
from atelier.settings import Settings
from storage.db import migrate
from tests.discord.emulator import DiscordEmulator
from tests.slack.emulator import SlackEmulator
from tests.support import atelier_env, redis_url, run_atelier, s3_settings

REDIS_URL = redis_url(15)
DOCTOR_TIMEOUT_S = 120  # importing torch on a busy 2-core machine
ROWS = ("redis", "database", "blobs", "discord", "slack", "device", "weights")
MIGRATIONS = sorted(
    path.stem for path in (Path(__file__).parents[1] / "storage" / "migrations").glob("[0-9]*.py")
)


def _env(root: Path, **extra: str) -> dict[str, str]:
    """Settings for a fresh folder: the test Redis, a SQLite file not created yet, a local blob folder."""
    return {
        "ATELIER_DATA_DIR": str(root / "data"),
        "ATELIER_REDIS_URL": REDIS_URL,
        "ATELIER_DATABASE_URL": f"sqlite://{root}/data/atelier.db",
        "ATELIER_BLOB_URL": str(root / "blobs"),
        "ATELIER_TINY_MODELS": "1",
        **extra,
    }


async def _doctor(root: Path, env: dict[str, str]) -> tuple[int, str, str]:
    """Run `atelier doctor` without blocking the loop that serves the emulators: (status, stdout, stderr)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "atelier",
        "doctor",
        cwd=root,
        env=atelier_env(env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), DOCTOR_TIMEOUT_S)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def _rows(stdout: str) -> dict[str, tuple[str, str]]:
    """The table's rows, by check name: (status, detail)."""
    table = stdout.split("\n\n")[0]
    rows = {}
    for line in table.splitlines():
        name, status, detail = line.split(None, 2)
        rows[name] = (status, detail)
    return rows


def _fixes(stdout: str) -> dict[str, str]:
    """The `fix: <check>: <what to do>` lines, by check name."""
    fixes = {}
    for line in stdout.splitlines():
        if line.startswith("fix: "):
            name, _, fix = line.removeprefix("fix: ").partition(": ")
            fixes[name] = fix
    return fixes


def test_no_token_fails_naming_the_platform_variables(tmp_path: Path) -> None:
    result = run_atelier("doctor", cwd=tmp_path, env=_env(tmp_path), timeout=DOCTOR_TIMEOUT_S)

    assert result.returncode == 1, result.stdout + result.stderr
    rows = _rows(result.stdout)
    assert set(ROWS) <= set(rows), result.stdout
    assert rows["redis"] == ("ok", f"{REDIS_URL}: answers PING")
    assert rows["blobs"][0] == "ok" and str(tmp_path / "blobs") in rows["blobs"][1]
    assert rows["database"] == (
        "ok",
        f"sqlite://{tmp_path}/data/atelier.db: will be created; {len(MIGRATIONS)} migrations applied at start",
    )
    assert rows["discord"][0] == rows["slack"][0] == "off"
    assert rows["platform"][0] == "FAIL"
    assert rows["weights"][0] == "ok" and "ATELIER_TINY_MODELS=1" in rows["weights"][1]
    assert rows["device"][0] == "ok" and rows["device"][1].startswith(("cpu: ", "cuda"))
    fix = _fixes(result.stdout)["platform"]
    assert "ATELIER_DISCORD_TOKEN" in fix and "ATELIER_SLACK_BOT_TOKEN" in fix
    assert result.stdout.rstrip().endswith("not ready: 1 problem to fix before `atelier serve`")
    # Nothing was left behind: no SQLite file, no test blob.
    assert not (tmp_path / "data" / "atelier.db").exists()
    assert [path for path in (tmp_path / "blobs").rglob("*") if path.is_file()] == []


async def test_both_platforms_sign_in_and_no_token_is_printed(
    tmp_path: Path, postgres_databases: Callable[[str], Awaitable[str]]
) -> None:
    database_url = await postgres_databases("atelier_test_doctor_migrated")
    await migrate(database_url)
    discord = DiscordEmulator(bot_token=f"discord-{uuid.uuid4().hex}")
    slack = SlackEmulator(bot_token=f"xoxb-{uuid.uuid4().hex}")
    app_token = f"xapp-{uuid.uuid4().hex}"
    await discord.start()
    await slack.start()
    try:
        env = _env(
            tmp_path,
            ATELIER_DATABASE_URL=database_url,
            ATELIER_DISCORD_TOKEN=discord.bot_token,
            ATELIER_DISCORD_API_BASE=discord.api_base,
            ATELIER_SLACK_BOT_TOKEN=slack.bot_token or "",
            ATELIER_SLACK_APP_TOKEN=app_token,
            ATELIER_SLACK_API_BASE=slack.api_base.removesuffix("/"),  # the slash is added, as the app does
        )
        status, out, err = await _doctor(tmp_path, env)
    finally:
        await discord.close()
        await slack.close()

    assert status == 0, out + err
    rows = _rows(out)
    assert rows["discord"] == ("ok", f"signed in as atelier ({discord.app_id}) via {discord.api_base}")
    assert rows["slack"] == ("ok", "team Atelier Test as atelier; Socket Mode")
    assert rows["database"] == ("ok", f"{database_url}: answers, migrations up to date")
    assert "platform" not in rows and _fixes(out) == {}
    assert out.rstrip().endswith("ready: everything `atelier serve` needs answers")
    # The checks really asked the platforms, with the tokens; the output shows none of them.
    assert [(r.method, r.path, r.status) for r in discord.requests] == [("GET", "/users/@me", 200)]
    assert [call.token for call in slack.api_calls("auth.test")] == [slack.bot_token]
    for secret in (discord.bot_token, slack.bot_token, app_token):
        assert secret and secret not in out + err


async def test_refused_token_http_mode_without_secret_and_unreachable_database(tmp_path: Path) -> None:
    discord = DiscordEmulator(bot_token="the-right-token")
    slack = SlackEmulator()
    wrong = f"wrong-{uuid.uuid4().hex}"
    await discord.start()
    await slack.start()
    try:
        env = _env(
            tmp_path,
            ATELIER_DISCORD_TOKEN=wrong,
            ATELIER_DISCORD_API_BASE=discord.api_base,
            ATELIER_SLACK_BOT_TOKEN="xoxb-http-mode",
            ATELIER_SLACK_API_BASE=slack.api_base,
            ATELIER_DATABASE_URL="postgres://atelier:s3cret-pw@127.0.0.1:1/atelier",
        )
        status, out, err = await _doctor(tmp_path, env)
    finally:
        await discord.close()
        await slack.close()

    assert status == 1, out + err
    rows, fixes = _rows(out), _fixes(out)
    assert rows["discord"] == ("FAIL", f"token refused (HTTP 401) via {discord.api_base}")
    assert "ATELIER_DISCORD_TOKEN" in fixes["discord"] and "Bot page" in fixes["discord"]
    # Slack signs in, but HTTP mode cannot verify requests without the signing secret.
    assert rows["slack"] == ("FAIL", "team Atelier Test as atelier; HTTP mode without a signing secret")
    assert "ATELIER_SLACK_SIGNING_SECRET" in fixes["slack"] and "ATELIER_SLACK_APP_TOKEN" in fixes["slack"]
    # Nothing listens on port 1; the password is masked.
    database = rows["database"]
    assert database[0] == "FAIL" and database[1].startswith("postgres://atelier:***@127.0.0.1:1/atelier: ")
    assert "ATELIER_DATABASE_URL" in fixes["database"]
    for secret in (wrong, "xoxb-http-mode", "s3cret-pw"):
        assert secret not in out + err


async def test_pending_migrations_are_counted_not_applied(
    tmp_path: Path, postgres_databases: Callable[[str], Awaitable[str]]
) -> None:
    database_url = await postgres_databases("atelier_test_doctor_empty")

    status, out, err = await _doctor(tmp_path, _env(tmp_path, ATELIER_DATABASE_URL=database_url))

    assert status == 1, out + err  # no chat platform configured
    assert _rows(out)["database"] == ("ok", f"{database_url}: {len(MIGRATIONS)} pending (applied at start)")
    connection = await asyncpg.connect(database_url)
    try:
        tables = await connection.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    finally:
        await connection.close()
    assert [row["tablename"] for row in tables] == []  # not even tortoise's migration table


def test_weights_row_sees_what_the_engine_built_and_local_sources(tmp_path: Path) -> None:
    from engine.registry import Registry
    from engine.tiny import ensure_built
    from engine.tiny_weights import ensure_weights

    registry = Registry.load()
    ensure_built(registry.get("tiny"), tmp_path / "models")
    ensure_weights(registry.get("tiny-upscale-x4"), tmp_path / "models")

    tiny = check_weights(Settings(tiny_models=True, model_cache_dir=tmp_path / "models"))
    assert tiny.ok and tiny.detail.startswith(
        "tiny models (ATELIER_TINY_MODELS=1); built: tiny, tiny-upscale-x4;"
    )

    (tmp_path / "sd15").mkdir()
    models_file = tmp_path / "models.toml"
    models_file.write_text(f'[presets.sd15]\nsource = "{tmp_path / "sd15"}"\n')
    real = check_weights(Settings(model_cache_dir=tmp_path / "models", models_file=models_file))
    assert real.ok and not real.required
    assert real.detail.startswith("present: sd15; missing (downloaded on first use): sdxl, sdxl-turbo, ")


async def test_blobs_round_trip_on_s3(moto_s3_endpoint: str) -> None:
    settings = Settings(blob_url="s3://doctor-checks/atelier", **s3_settings(moto_s3_endpoint))
    blobs = await check_blobs(settings)
    assert blobs.ok, blobs
    assert blobs.detail == (
        f"s3://doctor-checks/atelier at {moto_s3_endpoint}: wrote, read back and deleted a test object"
    )
