"""`atelier doctor`: for the current settings, what is configured and whether it answers.

Each service `atelier serve` needs (Redis, the database, the blob store, at least one chat platform) gets a
required check; the device and the presets' weights are informational. The network checks run concurrently,
each under a short timeout, so a dead host costs seconds, not minutes. Nothing is changed on the way: pending
migrations are counted, not applied; a SQLite file that does not exist yet is not created; the blob written to
prove the store works is deleted again. Secret values never appear in a check's text.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import uuid
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import aiohttp
from pydantic import SecretStr

from atelier.settings import Settings

if TYPE_CHECKING:
    from engine.registry import Preset

REDIS_TIMEOUT_S = 3.0
HTTP_TIMEOUT_S = 5.0
DATABASE_TIMEOUT_S = 8.0
BLOBS_TIMEOUT_S = 10.0
# Starting the embedded Redis (its own limit is 30 s), importing torch on a busy machine.
SLOW_TIMEOUT_S = 60.0

REDIS_FIX = "set ATELIER_REDIS_URL to a reachable Redis, or unset it to use the embedded one"
DATABASE_FIX = (
    "start PostgreSQL or correct ATELIER_DATABASE_URL (postgres://user:password@host:5432/name or "
    "sqlite://path/to.db)"
)
BLOBS_FIX = "make ATELIER_BLOB_URL a writable folder, or an s3://bucket/prefix with its ATELIER_S3_* settings"
PLATFORM_FIX = (
    "set ATELIER_DISCORD_TOKEN (Discord) or ATELIER_SLACK_BOT_TOKEN with ATELIER_SLACK_APP_TOKEN or "
    "ATELIER_SLACK_SIGNING_SECRET (Slack); `atelier discord --help` and the README say where to find them"
)
DISCORD_REFUSED_FIX = (
    "Discord refused the token: copy it again from the Bot page of your application (ATELIER_DISCORD_TOKEN)"
)
SLACK_REFUSED_FIX = (
    "Slack refused the bot token: copy the Bot User OAuth Token (xoxb-…) again from OAuth & Permissions "
    "(ATELIER_SLACK_BOT_TOKEN)"
)
DEVICE_FIX = "set ATELIER_DEVICE to auto, cpu or an existing cuda:N, and ATELIER_DTYPE to auto or a dtype"
WEIGHTS_FIX = "correct ATELIER_MODELS_FILE (see engine/models.toml for the fields)"
NAMES_SHOWN = 4  # presets named per list in the weights row; the rest are counted


@dataclass(frozen=True)
class Check:
    """One row of the report: what is configured, what it answered, and the fix when it did not."""

    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = True  # False: informational (device, weights, an unconfigured platform)


async def run_checks(settings: Settings) -> list[Check]:
    """Every check for `settings`, in report order: redis, database, blobs, discord, slack, (platform), device,
    weights. Network checks run concurrently; blocking work (torch, the embedded Redis) runs in threads."""
    checks = await asyncio.gather(
        _guarded("redis", check_redis(settings), REDIS_FIX, SLOW_TIMEOUT_S),
        _guarded("database", check_database(settings.database_url), DATABASE_FIX, DATABASE_TIMEOUT_S),
        _guarded("blobs", check_blobs(settings), BLOBS_FIX, BLOBS_TIMEOUT_S),
        _guarded(
            "discord", check_discord(settings), "check ATELIER_DISCORD_TOKEN and ATELIER_DISCORD_API_BASE"
        ),
        _guarded("slack", check_slack(settings), "check ATELIER_SLACK_BOT_TOKEN and ATELIER_SLACK_API_BASE"),
        _guarded(
            "device", asyncio.to_thread(check_device, settings), DEVICE_FIX, SLOW_TIMEOUT_S, required=False
        ),
        _guarded(
            "weights", asyncio.to_thread(check_weights, settings), WEIGHTS_FIX, SLOW_TIMEOUT_S, required=False
        ),
    )
    rows = list(checks)
    if settings.discord_token is None and settings.slack_bot_token is None:
        after_slack = [row.name for row in rows].index("slack") + 1
        rows.insert(after_slack, Check("platform", False, "no chat platform is configured", PLATFORM_FIX))
    secrets = _secret_values(settings)
    return [_redacted(row, secrets) for row in rows]


def passed(checks: Iterable[Check]) -> bool:
    """Whether every required check answered: what `atelier serve` needs before it starts."""
    return all(check.ok for check in checks if check.required)


def render(checks: list[Check]) -> str:
    """One screen: an aligned table (name, status, detail), one `fix:` line per problem, then the verdict."""
    width = max(len(check.name) for check in checks)
    lines = [f"{check.name:<{width}}  {_status(check):<4}  {check.detail}" for check in checks]
    fixes = [f"fix: {check.name}: {check.fix}" for check in checks if not check.ok and check.fix]
    if fixes:
        lines += ["", *fixes]
    problems = sum(1 for check in checks if check.required and not check.ok)
    verdict = (
        "ready: everything `atelier serve` needs answers"
        if not problems
        else f"not ready: {problems} problem{'s' if problems > 1 else ''} to fix before `atelier serve`"
    )
    return "\n".join([*lines, "", verdict])


def _status(check: Check) -> str:
    if check.ok:
        return "ok"
    if check.required:
        return "FAIL"
    return "warn" if check.fix else "off"


# Redis.


async def check_redis(settings: Settings) -> Check:
    """PING the configured Redis; without a URL, the data folder's embedded one (started and stopped here when
    no process runs it, as `atelier serve` would start it)."""
    import redis.asyncio as aioredis

    if settings.redis_url:
        where = mask_url(settings.redis_url)
        client = aioredis.from_url(
            settings.redis_url, socket_connect_timeout=REDIS_TIMEOUT_S, socket_timeout=REDIS_TIMEOUT_S
        )
        try:
            await client.ping()
        except (aioredis.RedisError, OSError) as exc:
            return Check("redis", False, f"{where}: no answer ({_reason(exc)})", REDIS_FIX)
        finally:
            await client.aclose()
        return Check("redis", True, f"{where}: answers PING")

    from atelier.embedded_redis import EmbeddedRedis

    embedded = EmbeddedRedis(settings.data_dir)
    if await asyncio.to_thread(embedded.running):
        return Check("redis", True, f"embedded, running at {embedded.socket_path}")
    fix = f"see {embedded.dir / 'redis.log'}, or set ATELIER_REDIS_URL to a Redis of your own"
    try:
        await asyncio.to_thread(embedded.start)
    except (RuntimeError, OSError) as exc:
        return Check("redis", False, f"embedded: did not start ({_reason(exc)})", fix)
    try:
        client = aioredis.Redis(unix_socket_path=embedded.socket_path, socket_timeout=REDIS_TIMEOUT_S)
        try:
            await client.ping()
        finally:
            await client.aclose()
    except (aioredis.RedisError, OSError) as exc:
        return Check("redis", False, f"embedded: no answer ({_reason(exc)})", fix)
    finally:
        await asyncio.to_thread(embedded.stop)
    return Check("redis", True, "embedded (started and stopped for this check)")


# Database.


async def pending_migrations(url: str) -> list[str]:
    """Names of the migrations the database at `url` lacks, oldest first, applying none of them.

    A SQLite file that does not exist yet lacks them all, and is not created. Raises what connecting raises
    (an unreachable server, a missing database), and ValueError for an unusable URL.
    """
    from tortoise.context import TortoiseContext
    from tortoise.migrations.executor import MigrationExecutor
    from tortoise.migrations.loader import MigrationLoader

    from storage.db import CONNECTION_NAME, tortoise_config

    config = tortoise_config(url)
    sqlite_file = _sqlite_file(url)
    if sqlite_file is not None and not sqlite_file.exists():
        loader = MigrationLoader(config["apps"], recorder=None)  # type: ignore[arg-type]  # reads files only
        loader.load_disk()
        return sorted(key.name for key in loader.disk_migrations)
    async with TortoiseContext() as context:
        await context.init(config=config)
        connection = context.db(CONNECTION_NAME)
        # tortoise reads the applied migrations with every error swallowed: prove the database answers first.
        await connection.execute_query("SELECT 1")
        plan = await MigrationExecutor(connection, config["apps"]).plan()
    return [step.migration.name for step in plan if not step.backward]


async def check_database(url: str) -> Check:
    """Connect and count pending migrations (`atelier serve` applies them at start)."""
    from tortoise.exceptions import ConfigurationError

    where = mask_url(url)
    try:
        pending = await pending_migrations(url)
    except (ValueError, ConfigurationError) as exc:
        return Check("database", False, f"{where}: unusable URL ({exc})", DATABASE_FIX)
    except Exception as exc:  # asyncpg, sqlite and tortoise each raise their own
        return Check("database", False, f"{where}: no answer ({_reason(exc)})", DATABASE_FIX)
    path = _sqlite_file(url)
    if path is not None and not path.exists():
        folder = _nearest_existing(path.absolute().parent)
        if not (folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)):
            fix = f"make {folder} writable by this user, or point ATELIER_DATABASE_URL at another file"
            return Check("database", False, f"{where}: cannot be created ({folder} is not writable)", fix)
        state = f"will be created; {len(pending)} migrations applied at start"
    elif pending:
        state = f"{len(pending)} pending (applied at start)"
    else:
        state = "answers, migrations up to date"
    return Check("database", True, f"{where}: {state}")


def _nearest_existing(path: Path) -> Path:
    """`path`, or its closest ancestor that exists (where creating the missing folders would start)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL (None for any other database, or an in-memory one)."""
    from tortoise.backends.base.config_generator import expand_db_url
    from tortoise.exceptions import ConfigurationError

    try:
        credentials = expand_db_url(url)
    except ConfigurationError:
        return None
    if credentials["engine"] != "tortoise.backends.sqlite":
        return None
    file_path = credentials["credentials"]["file_path"]
    return None if file_path == ":memory:" or file_path.startswith("file:") else Path(file_path)


# Blob store.


async def check_blobs(settings: Settings) -> Check:
    """Write a small object under `doctor/<uuid>`, read it back, compare, delete it."""
    from atelier.runtime import blob_store_for
    from storage.blobs import LocalBlobStore

    try:
        store = blob_store_for(settings)
    except ValueError as exc:
        return Check("blobs", False, str(exc), BLOBS_FIX)
    if isinstance(store, LocalBlobStore):
        where = f"folder {store.root}"
        fix = f"make {store.root} writable by this user, or set ATELIER_BLOB_URL to another folder"
    else:
        where = f"{mask_url(settings.blob_url)} at {settings.s3_endpoint_url or 'AWS S3'}"
        fix = "check ATELIER_BLOB_URL, ATELIER_S3_ENDPOINT_URL and the ATELIER_S3_* access keys"
    key, payload = f"doctor/{uuid.uuid4().hex}", f"atelier doctor {uuid.uuid4()}".encode()
    try:
        await store.put(key, payload, "text/plain")
        try:
            back = await store.get(key)
        finally:
            await store.delete(key)
    except Exception as exc:  # OSError locally, botocore errors for S3
        return Check("blobs", False, f"{where}: write and read back failed ({_reason(exc)})", fix)
    finally:
        await store.close()
    if back != payload:
        return Check("blobs", False, f"{where}: read back other bytes than written", fix)
    return Check("blobs", True, f"{where}: wrote, read back and deleted a test object")


# Chat platforms.


async def check_discord(settings: Settings) -> Check:
    """GET `users/@me` with the bot token: who the bot signs in as."""
    token = settings.secret("discord_token")
    if not token:
        return Check("discord", False, "not configured (set ATELIER_DISCORD_TOKEN)", required=False)
    base = settings.discord_api_base.rstrip("/")
    via = "" if base == Settings.model_fields["discord_api_base"].default else f" via {base}"
    try:
        status, body = await _http("GET", f"{base}/users/@me", f"Bot {token}")
    except (aiohttp.ClientError, TimeoutError) as exc:
        fix = f"check this machine's connection to {urlsplit(base).hostname}, or ATELIER_DISCORD_API_BASE"
        return Check("discord", False, f"cannot reach {base} ({_reason(exc)})", fix)
    if status == 401:
        return Check("discord", False, f"token refused (HTTP 401){via}", DISCORD_REFUSED_FIX)
    if status != 200 or not isinstance(body, dict):
        fix = f"check ATELIER_DISCORD_API_BASE ({base}): it should be Discord's REST API or a proxy of it"
        return Check("discord", False, f"{base}/users/@me answered HTTP {status}", fix)
    return Check("discord", True, f"signed in as {body.get('username')} ({body.get('id')}){via}")


async def check_slack(settings: Settings) -> Check:
    """POST `auth.test` with the bot token (which team, as whom), and check what the mode needs: Socket Mode
    with an app token, else HTTP mode, which verifies every request with the signing secret."""
    from bots.slack.config import SlackConfig

    token = settings.secret("slack_bot_token")
    if not token:
        return Check("slack", False, "not configured (set ATELIER_SLACK_BOT_TOKEN)", required=False)
    config_problem = ""
    try:
        SlackConfig(  # the app's own validation: the mode's secrets, the API base, the reaction actions
            bot_token=token,
            signing_secret=settings.secret("slack_signing_secret"),
            app_token=settings.secret("slack_app_token"),
            api_base=settings.slack_api_base,
            reactions=dict(settings.slack_reactions),
        )
    except ValueError as exc:
        config_problem = str(exc)
    if settings.slack_app_token is not None:
        mode = "Socket Mode"
    elif settings.slack_signing_secret is not None:
        mode = f"HTTP mode on {settings.slack_host}:{settings.slack_port}"
    else:
        mode = "HTTP mode without a signing secret"
    ok, detail, fix = await _slack_auth_test(settings.slack_api_base, token)
    if ok and config_problem:
        ok, fix = False, config_problem
    return Check("slack", ok, f"{detail}; {mode}", fix)


async def _slack_auth_test(api_base: str, token: str) -> tuple[bool, str, str]:
    """(ok, what auth.test answered, the fix when not ok)."""
    api_base = api_base if api_base.endswith("/") else api_base + "/"  # as SlackConfig and slack_sdk join it
    try:
        status, body = await _http("POST", f"{api_base}auth.test", f"Bearer {token}")
    except (aiohttp.ClientError, TimeoutError) as exc:
        fix = f"check this machine's connection to {urlsplit(api_base).hostname}, or ATELIER_SLACK_API_BASE"
        return False, f"cannot reach {api_base} ({_reason(exc)})", fix
    if not isinstance(body, dict) or status != 200:
        fix = f"check ATELIER_SLACK_API_BASE ({api_base}): it should be Slack's Web API base URL"
        return False, f"{api_base}auth.test answered HTTP {status}", fix
    if not body.get("ok"):
        return False, f"token refused ({body.get('error', 'no reason given')})", SLACK_REFUSED_FIX
    return True, f"team {body.get('team')} as {body.get('user')}", ""


async def _http(method: str, url: str, authorization: str) -> tuple[int, object]:
    """(status, JSON body or None) of one request; redirects are not followed, so the token goes nowhere else."""
    timeout = aiohttp.ClientTimeout(total=HTTP_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        headers = {"Authorization": authorization}
        async with session.request(method, url, headers=headers, allow_redirects=False) as response:
            try:
                body = await response.json(content_type=None)
            except ValueError:
                body = None
            return response.status, body


# Device and weights (informational).


def check_device(settings: Settings) -> Check:
    """The device and dtype the engine would choose for `settings`, and its memory. Imports torch (seconds)."""
    import torch

    from engine.device import choose_device, choose_dtype

    try:
        device = choose_device(settings.device)
        dtype = str(choose_dtype(device, settings.dtype)).removeprefix("torch.")
    except ValueError as exc:
        return Check("device", False, str(exc), DEVICE_FIX, required=False)
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        name = torch.cuda.get_device_name(device)
        return Check(
            "device",
            True,
            f"{device} ({name}): {_gib(total)} memory, {_gib(free)} free; {dtype}",
            required=False,
        )
    page = os.sysconf("SC_PAGE_SIZE")
    total, free = page * os.sysconf("SC_PHYS_PAGES"), page * os.sysconf("SC_AVPHYS_PAGES")
    return Check("device", True, f"{device}: {_gib(total)} RAM, {_gib(free)} free; {dtype}", required=False)


def check_weights(settings: Settings) -> Check:
    """Which presets that jobs would run have their weights on this machine: the tiny ones (built on first use)
    with ATELIER_TINY_MODELS=1, else the real ones (downloaded on first use)."""
    from engine.registry import Registry

    try:
        registry = Registry.load(settings.models_file)
    except (OSError, ValueError) as exc:
        return Check("weights", False, f"the model registry does not load: {exc}", WEIGHTS_FIX)
    presets = [registry.get(name) for name in registry.names()]
    presets = [preset for preset in presets if preset.is_tiny == settings.tiny_models]
    present = [preset.name for preset in presets if weights_present(preset, settings.models_dir)]
    missing = [preset.name for preset in presets if preset.name not in present]
    if settings.tiny_models:
        built = f"built: {_names(present)}; built on first use: {_names(missing)}"
        detail = f"tiny models (ATELIER_TINY_MODELS=1); {built}"
        return Check("weights", True, detail, required=False)
    detail = f"present: {_names(present)}; missing (downloaded on first use): {_names(missing)}"
    default = registry.default("txt2img")
    if default in missing:
        fix = (
            f"the first job downloads {default} (internet needed); or point its `source` at a local copy "
            "in ATELIER_MODELS_FILE"
        )
        return Check("weights", False, detail, fix, required=False)
    return Check("weights", True, detail, required=False)


def weights_present(preset: Preset, models_dir: Path) -> bool:
    """Whether `preset`'s weights are on this machine, read-only (the engine's loaders build or download them):
    a tiny preset's build in `models_dir`; a local source; a downloaded weight file in `models_dir/downloads`;
    a Hugging Face repo or file in the Hugging Face cache (HF_HOME), where diffusers keeps them."""
    if preset.is_tiny:
        folder = Path(models_dir) / preset.name
        return folder.is_dir() and any(not entry.name.startswith(".") for entry in folder.iterdir())
    local = Path(preset.source).expanduser()
    if local.exists():
        return True
    if preset.source.startswith("https://"):
        return (Path(models_dir) / "downloads" / preset.source.rsplit("/", 1)[1]).is_file()
    parts = preset.source.split("/")
    if preset.role in ("upscale", "face"):  # a single weight file: owner/repo/filename
        return len(parts) >= 3 and _hf_cached("/".join(parts[:2]), "/".join(parts[2:])) is not None
    index = _hf_cached(preset.source, "model_index.json")
    if index is None:
        return False
    return any(index.parent.rglob("*.safetensors")) or any(index.parent.rglob("*.bin"))


def _hf_cached(repo_id: str, filename: str) -> Path | None:
    """The file's path in the Hugging Face cache, or None (also for a source that is no repo id)."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(repo_id, filename)
    except ValueError:  # not a valid repo id
        return None
    return Path(found) if isinstance(found, str) else None


# Helpers.


async def _guarded(
    name: str,
    check: Awaitable[Check],
    fix: str,
    timeout_s: float = 2 * HTTP_TIMEOUT_S,
    *,
    required: bool = True,
) -> Check:
    """`check`'s row, or a failing one when it raises or outlasts `timeout_s`: a report, never a traceback."""
    try:
        return await asyncio.wait_for(check, timeout_s)
    except TimeoutError:
        return Check(name, False, f"no answer within {timeout_s:g} s", fix, required)
    except Exception as exc:
        return Check(name, False, f"check failed: {_reason(exc)}", fix, required)


def mask_url(url: str) -> str:
    """`url` with any password in it replaced by `***` (redis://:secret@host -> redis://:***@host)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    userinfo, _, hostport = parts.netloc.rpartition("@")
    return parts._replace(netloc=f"{userinfo.split(':', 1)[0]}:***@{hostport}").geturl()


def _secret_values(settings: Settings) -> list[str]:
    return [
        value.get_secret_value()
        for _, value in settings
        if isinstance(value, SecretStr) and value.get_secret_value()
    ]


def _redacted(check: Check, secrets: list[str]) -> Check:
    """`check` with any secret value that slipped into its text (an error message echoing a URL) masked."""
    detail, fix = check.detail, check.fix
    for secret in secrets:
        detail, fix = detail.replace(secret, "***"), fix.replace(secret, "***")
    return dataclasses.replace(check, detail=detail, fix=fix)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _gib(size: int) -> str:
    return f"{size / 2**30:.1f} GiB"


def _names(names: list[str]) -> str:
    if not names:
        return "none"
    shown = ", ".join(names[:NAMES_SHOWN])
    return shown if len(names) <= NAMES_SHOWN else f"{shown} +{len(names) - NAMES_SHOWN} more"
