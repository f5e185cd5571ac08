"""A Slack file whose download URL (`url_private_download`, as `files.info` or a message names it) is on another
host, or redirects there, is refused with a message that names no address: the other host gets no request, so
never the bot token, and nothing is queued. The real `atelier slack` (HTTP mode) against the Slack emulator; the
other host is a second local server (another port: the emulator's origin is allowed as the configured API base,
by scheme, host and port)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import asyncpg
import pytest_asyncio

from tests.security.recorder import Recorder
from tests.slack.emulator import SlackEmulator
from tests.slack.slack_requests import a_png, message_shortcut, post_signed_form, slash_command

REFUSAL = "that file is not on Slack's file servers, so I can't fetch it"


@pytest_asyncio.fixture
async def foreign() -> AsyncIterator[Recorder]:
    recorder = Recorder(a_png())
    await recorder.start()
    yield recorder
    await recorder.close()


async def _refused(emulator: SlackEmulator, name: str, foreign: Recorder) -> str:
    reply = (await emulator.wait_for(lambda: emulator.responses(name), what=f"the answer to {name}"))[0]
    text = reply.args["text"]
    assert reply.args["response_type"] == "ephemeral" and REFUSAL in text, reply.args
    assert "127.0.0.1" not in text and str(foreign.port) not in text, text  # no address is shown
    return text


async def test_upscale_of_a_file_whose_download_url_is_on_another_host_is_refused_and_sends_it_nothing(
    http_bot: str, slack_emulator: SlackEmulator, db: asyncpg.Connection, foreign: Recorder
) -> None:
    channel = "CSECFOREIGN"
    jobs_before = await db.fetchval("SELECT count(*) FROM jobs")
    file = slack_emulator.add_file(a_png(), "remote.png", "image/png")
    file["url_private"] = foreign.url(f"files/{file['id']}/remote.png")  # an external file: another host
    file["url_private_download"] = file["url_private"] + "?download=1"

    command = slash_command(
        f"<{file['permalink']}>", channel=channel, response_url=slack_emulator.response_url("sec-foreign")
    )
    command["command"] = "/upscale"
    assert (await post_signed_form(http_bot, command)).status == 200
    await _refused(slack_emulator, "sec-foreign", foreign)

    assert slack_emulator.api_calls("files.info", file=file["id"])  # the app did ask Slack, and got that URL
    assert foreign.requests == []  # and sent it nothing: no request, no token
    assert await db.fetchval("SELECT count(*) FROM jobs") == jobs_before
    assert not slack_emulator.api_calls("chat.postMessage", channel=channel)


async def test_a_shortcut_on_a_file_that_redirects_to_another_host_is_refused_and_the_redirect_not_followed(
    http_bot: str, slack_emulator: SlackEmulator, db: asyncpg.Connection, foreign: Recorder
) -> None:
    channel = "CSECREDIRECT"
    jobs_before = await db.fetchval("SELECT count(*) FROM jobs")
    file = slack_emulator.add_file(a_png(), "moved.png", "image/png")
    slack_emulator.file_redirects[file["id"]] = foreign.url("internal/metadata")

    shortcut = message_shortcut(
        "upscale",
        {"ts": "1700000900.000100", "files": [file]},
        channel=channel,
        response_url=slack_emulator.response_url("sec-redirect"),
    )
    assert (await post_signed_form(http_bot, {"payload": json.dumps(shortcut)})).status == 200
    await _refused(slack_emulator, "sec-redirect", foreign)

    assert len(slack_emulator.downloads(file["id"])) == 1  # Slack's own server was asked (with the token)...
    assert foreign.requests == []  # ...and its redirect to another host was not followed
    assert await db.fetchval("SELECT count(*) FROM jobs") == jobs_before
    assert not slack_emulator.api_calls("chat.postMessage", channel=channel)
