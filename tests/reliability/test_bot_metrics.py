"""Both bots' own metrics on /metrics: commands by name and outcome, the time to acknowledge, the platform's 429s
and retries, and the bot's posts that failed. The bots are the real `atelier discord` and `atelier slack`
processes against the emulators, driven as members would; no worker runs (a started job stays queued)."""

from __future__ import annotations

import asyncio
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.discord.emulator import DiscordEmulator
from tests.reliability.redis_server import RedisServer, free_port
from tests.slack.emulator import SlackEmulator
from tests.support import atelier_env

START_S = 180
WITHIN_S = 60

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def healthz(base: str) -> int:
    try:
        with urllib.request.urlopen(f"{base}/healthz", timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0  # not listening yet


def scrape(base: str) -> Samples:
    """Every sample on the bot's /metrics, by name and labels."""
    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """A sample's value; 0 for a series that does not exist (a counter never incremented)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def commands(samples: Samples, platform: str) -> dict[tuple[str, str], float]:
    """`atelier_bot_commands_total` of `platform`, by (command, outcome)."""
    found = {}
    for (name, labels), count in samples.items():
        by = dict(labels)
        if name == "atelier_bot_commands_total" and by["platform"] == platform:
            found[by["command"], by["outcome"]] = count
    return found


async def wait_metrics(base: str, done: Callable[[Samples], bool], what: str) -> Samples:
    """Scrape until `done` holds (the bot counts an outcome just after answering, so a little after the
    emulator saw the answer)."""
    deadline = time.monotonic() + WITHIN_S
    while not done(samples := await asyncio.to_thread(scrape, base)):
        if time.monotonic() > deadline:
            bot_series = {k: v for k, v in samples.items() if "atelier_bot" in k[0] or "platform" in k[0]}
            raise AssertionError(f"timed out waiting for {what}; the bot's series: {bot_series}")
        await asyncio.sleep(0.1)
    return samples


@asynccontextmanager
async def bot_process(command: str, env: dict[str, str], tmp_path: Path) -> AsyncIterator[str]:
    """`atelier <command>` running until the block ends; yields its /metrics base URL once /healthz is 200."""
    base = f"http://127.0.0.1:{env['ATELIER_METRICS_PORT']}"
    log = tmp_path / f"{command}.log"
    with log.open("wb") as out:
        bot = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "atelier", command, env=env, cwd=tmp_path, stdout=out, stderr=out
        )
    try:
        deadline = time.monotonic() + START_S
        while (status := await asyncio.to_thread(healthz, base)) != 200:
            assert time.monotonic() < deadline, f"{command}: /healthz answered {status} after {START_S} s"
            await asyncio.sleep(0.2)
        yield base
    except (AssertionError, TimeoutError) as exc:
        raise AssertionError(f"{exc}\n{log.read_text()[-3000:]}") from None
    finally:
        if bot.returncode is None:
            bot.terminate()
            await bot.wait()


def bot_env(tmp_path: Path, redis_server: RedisServer, **platform: str) -> dict[str, str]:
    return atelier_env(
        {
            "ATELIER_REDIS_URL": f"redis://127.0.0.1:{redis_server.port}/0",
            "ATELIER_DATA_DIR": str(tmp_path / "data"),
            "ATELIER_TINY_MODELS": "1",
            "ATELIER_METRICS_PORT": str(free_port()),
            "PYTHONUNBUFFERED": "1",
            **platform,
        }
    )


async def test_the_discord_bot_counts_commands_acks_rate_limits_and_failed_posts(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    emulator = DiscordEmulator()
    await emulator.start()
    env = bot_env(
        tmp_path,
        redis_server,
        ATELIER_DISCORD_TOKEN=emulator.bot_token,
        ATELIER_DISCORD_API_BASE=emulator.api_base,
        ATELIER_DISCORD_GATEWAY_URL=emulator.gateway_url,
        ATELIER_DISCORD_GUILD_IDS=str(emulator.guild_id),
    )
    try:
        async with bot_process("discord", env, tmp_path) as base:
            await emulator.wait_until(emulator.bot_ready, WITHIN_S, "the bot's ready")
            # Opening the job's thread is rate limited once (discord.py waits and sends it again); the status
            # edit that shows the queue position fails (404): a failed post, but the job was started.
            limited = emulator.rate_limit("POST", r"/threads$", every=2, starting_with_first=True)
            emulator.fail("PATCH", r"/messages/@original$", status=404)
            started = await emulator.slash("imagine", {"prompt": "a lighthouse --steps 2"})
            await emulator.wait_response(started)
            await wait_metrics(
                base,
                lambda s: (
                    ("imagine", "started") in commands(s, "discord")
                    and value(s, "atelier_bot_posts_failed_total", platform="discord")
                ),
                "the started /imagine and its failed status edit",
            )
            refused = await emulator.slash("imagine", {"prompt": "a lighthouse --steps lots"})
            await emulator.wait_response(refused)
            assert "--steps needs a whole number" in refused.callback_data["content"]  # type: ignore[index]
            answered = await emulator.slash("atelier", {}, subcommand="queue")
            await emulator.wait_response(answered)
            samples = await wait_metrics(
                base,
                lambda s: {("imagine", "refused"), ("atelier", "answered")} <= commands(s, "discord").keys(),
                "the refused /imagine and /atelier queue",
            )
    finally:
        await emulator.close()

    assert commands(samples, "discord") == {
        ("imagine", "started"): 1,
        ("imagine", "refused"): 1,
        ("atelier", "answered"): 1,
    }
    assert value(samples, "atelier_bot_ack_seconds_count", platform="discord") == 3
    assert value(samples, "atelier_bot_ack_seconds_bucket", platform="discord", le="3.0") == 3  # in time
    assert limited.served == 1
    assert value(samples, "atelier_platform_rate_limited_total", platform="discord") == 1
    assert value(samples, "atelier_platform_retries_total", platform="discord") == 1
    assert value(samples, "atelier_bot_posts_failed_total", platform="discord") == 1


def slash(emulator: SlackEmulator, command: str, text: str, *, answers: str | None = None) -> dict[str, str]:
    """A slash command as Slack sends it over Socket Mode; ephemeral answers go to response URL `answers`."""
    return {
        "team_id": "T1",
        "team_domain": "atelier-test",
        "channel_id": "CMETRICS",
        "user_id": "U1",
        "user_name": "u1",
        "command": command,
        "text": text,
        "api_app_id": "A1",
        "response_url": emulator.response_url(answers),
        "trigger_id": uuid.uuid4().hex,
    }


async def test_the_slack_app_counts_commands_acks_rate_limits_and_failed_posts(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    emulator = SlackEmulator(bot_token="xoxb-metrics")
    await emulator.start()
    env = bot_env(
        tmp_path,
        redis_server,
        ATELIER_SLACK_BOT_TOKEN="xoxb-metrics",
        ATELIER_SLACK_APP_TOKEN="xapp-metrics",
        ATELIER_SLACK_API_BASE=emulator.api_base,
    )
    try:
        async with bot_process("slack", env, tmp_path) as base:
            await emulator.wait_socket_connected()
            # The status message is rate limited once: slack_sdk waits Retry-After (1 s) and posts it again.
            emulator.fail_next("chat.postMessage", status=429, retry_after=1)
            await emulator.send_envelope(
                "slash_commands", slash(emulator, "/imagine", "a lighthouse --steps 2")
            )
            await wait_metrics(base, lambda s: ("imagine", "started") in commands(s, "slack"), "the start")
            await emulator.send_envelope(
                "slash_commands", slash(emulator, "/imagine", "a lighthouse --steps lots", answers="refusal")
            )
            await wait_metrics(base, lambda s: ("imagine", "refused") in commands(s, "slack"), "the refusal")
            # Slack refuses the next status message outright: a failed post, and an error on our side.
            emulator.fail_next("chat.postMessage", status=200, error="internal_error", retry_after=None)
            await emulator.send_envelope("slash_commands", slash(emulator, "/imagine", "a harbour --steps 2"))
            await wait_metrics(base, lambda s: ("imagine", "error") in commands(s, "slack"), "the error")
            await emulator.send_envelope("slash_commands", slash(emulator, "/atelier", "tier"))
            samples = await wait_metrics(
                base,
                lambda s: ("atelier", "answered") in commands(s, "slack"),
                "the answered /atelier",
            )
    finally:
        await emulator.close()

    assert "--steps needs a whole number" in emulator.responses("refusal")[0].args["text"]
    assert commands(samples, "slack") == {
        ("imagine", "started"): 1,
        ("imagine", "refused"): 1,
        ("imagine", "error"): 1,
        ("atelier", "answered"): 1,
    }
    assert value(samples, "atelier_bot_ack_seconds_count", platform="slack") == 4
    assert value(samples, "atelier_bot_ack_seconds_bucket", platform="slack", le="3.0") == 4
    assert value(samples, "atelier_platform_rate_limited_total", platform="slack") == 1
    assert value(samples, "atelier_platform_retries_total", platform="slack") == 1
    assert value(samples, "atelier_bot_posts_failed_total", platform="slack") == 1
