"""`bots.fetch`, the one way user-supplied files are downloaded: which URLs it accepts per platform, and what it
does on real local servers (a redirect to another host, a token, a file larger than it said, a redirect loop).
Also Discord's attachment download, which goes through it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import discord
import pytest
import pytest_asyncio
from aiohttp import web

from bots.discord.inputs import AttachmentRef, download
from bots.fetch import FetchError, NotAllowed, TooLarge, discord_sources, fetch, slack_sources
from jobs.inputs import InputImageError
from tests.security.recorder import Recorder

SLACK = slack_sources("https://slack.com/api/")
GOVSLACK = slack_sources("https://slack-gov.com/api/")
EMULATED = slack_sources("http://127.0.0.1:8123/api/")
DISCORD = discord_sources("https://discord.com/api/v10")


@pytest.mark.parametrize(
    ("sources", "url", "allowed"),
    [
        (SLACK, "https://files.slack.com/files-pri/T1-F1/download/cat.png", True),
        (SLACK, "https://FILES.SLACK.COM/files-pri/T1-F1/cat.png", True),
        (SLACK, "https://files.slack.com:443/files-pri/T1-F1/cat.png", True),
        (SLACK, "https://files.slack-gov.com/files-pri/T1-F1/cat.png", True),
        (GOVSLACK, "https://files.slack-gov.com/files-pri/T1-F1/cat.png", True),
        (SLACK, "http://files.slack.com/files-pri/T1-F1/cat.png", False),  # https only
        (SLACK, "https://files.slack.com:8443/cat.png", False),
        (SLACK, "https://docs.google.com/uc?id=1&export=download", False),  # an external (Drive) file
        (SLACK, "https://files.slack.com.attacker.example/cat.png", False),
        (SLACK, "https://attacker.example/files.slack.com/cat.png", False),
        (SLACK, "https://files.slack.com@attacker.example/cat.png", False),
        (SLACK, "https://user:pw@files.slack.com/cat.png", False),
        (SLACK, "https://169.254.169.254/latest/meta-data/", False),
        (SLACK, "http://127.0.0.1:8123/files/F1/cat.png", False),  # no emulator configured
        (SLACK, "https://cdn.discordapp.com/attachments/1/2/cat.png", False),  # the other platform's host
        (SLACK, "file:///etc/passwd", False),
        (SLACK, "ftp://files.slack.com/cat.png", False),
        (SLACK, "//files.slack.com/cat.png", False),
        (SLACK, "https://files.slack.com:99999/cat.png", False),
        (SLACK, "", False),
        (EMULATED, "http://127.0.0.1:8123/files/F1/cat.png?download=1", True),  # the configured base's origin
        (EMULATED, "https://files.slack.com/files-pri/T1-F1/cat.png", True),
        (EMULATED, "http://127.0.0.1:8124/files/F1/cat.png", False),  # the same host, another port
        (EMULATED, "http://localhost:8123/files/F1/cat.png", False),  # another host name, same port
        (EMULATED, "https://127.0.0.1:8123/files/F1/cat.png", False),  # another scheme
        (DISCORD, "https://cdn.discordapp.com/attachments/1/2/cat.png?ex=1&is=2&hm=3", True),
        (DISCORD, "https://media.discordapp.net/attachments/1/2/cat.png", True),
        (DISCORD, "https://discord.com/api/v10/x", True),  # the configured API base's origin
        (DISCORD, "https://images-ext-1.discordapp.net/external/x/https/attacker.example/cat.png", False),
        (DISCORD, "https://files.slack.com/cat.png", False),
        (DISCORD, "http://cdn.discordapp.com/attachments/1/2/cat.png", False),
    ],
)
def test_which_urls_each_platform_fetches_from(sources, url: str, allowed: bool) -> None:
    assert sources.allows(url) is allowed


@pytest_asyncio.fixture
async def foreign() -> AsyncIterator[Recorder]:
    recorder = Recorder(b"\x89PNG foreign")
    await recorder.start()
    yield recorder
    await recorder.close()


@pytest_asyncio.fixture
async def platform(foreign: Recorder) -> AsyncIterator[Recorder]:
    """The platform's own file server (the configured base): `/file` serves a file, `/here` redirects on the same
    origin, `/away` redirects to the foreign server, `/loop` to itself, `/big` streams 3 MiB it never declared."""
    recorder = Recorder(b"\x89PNG platform")

    async def serve(request: web.Request) -> web.StreamResponse:
        recorder.requests.append((request.path, dict(request.headers)))
        redirects = {"/here": "/file", "/away": foreign.url("metadata"), "/loop": "/loop"}
        if request.path in redirects:
            return web.Response(status=302, headers={"Location": redirects[request.path]})
        if request.path == "/big":
            response = web.StreamResponse()
            await response.prepare(request)
            for _ in range(48):
                await response.write(bytes(64 * 1024))
            return response
        return web.Response(body=recorder.body, content_type="image/png")

    app = web.Application()
    app.router.add_get("/{tail:.*}", serve)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    recorder.host, recorder.port = "127.0.0.1", site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield recorder
    await runner.cleanup()


async def test_a_same_origin_redirect_is_followed_with_the_token(platform: Recorder) -> None:
    sources = slack_sources(platform.url("api/"))
    got = await fetch(platform.url("here"), sources, name="cat.png", max_bytes=2**20, token="xoxb-secret")
    assert got.data == b"\x89PNG platform"
    assert [(path, headers.get("Authorization")) for path, headers in platform.requests] == [
        ("/here", "Bearer xoxb-secret"),
        ("/file", "Bearer xoxb-secret"),
    ]


async def test_a_redirect_to_another_host_is_refused_and_that_host_gets_nothing(
    platform: Recorder, foreign: Recorder
) -> None:
    sources = slack_sources(platform.url("api/"))
    with pytest.raises(NotAllowed) as refused:
        await fetch(platform.url("away"), sources, name="cat.png", max_bytes=2**20, token="xoxb-secret")
    assert str(refused.value) == "that file is not on Slack's file servers, so I can't fetch it"
    assert [path for path, _ in platform.requests] == ["/away"]
    assert foreign.requests == []


async def test_a_url_on_another_host_is_refused_before_any_request(foreign: Recorder) -> None:
    sources = slack_sources("http://127.0.0.1:1/api/")  # an emulator on another port
    with pytest.raises(NotAllowed):
        await fetch(foreign.url("files/F1/cat.png"), sources, name="cat.png", max_bytes=2**20, token="xoxb-s")
    assert foreign.requests == []


async def test_the_size_limit_holds_while_streaming_and_redirects_are_bounded(platform: Recorder) -> None:
    sources = slack_sources(platform.url("api/"))
    with pytest.raises(TooLarge, match=r"big\.png is larger than the limit of 1 MiB"):
        await fetch(platform.url("big"), sources, name="big.png", max_bytes=2**20)
    with pytest.raises(FetchError, match="too many redirects"):
        await fetch(platform.url("loop"), sources, name="loop.png", max_bytes=2**20)
    assert [path for path, _ in platform.requests].count("/loop") == 4  # the first request and 3 redirects


async def test_a_discord_attachment_that_redirects_to_another_host_is_refused(
    platform: Recorder, foreign: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What `configure_endpoints` does with ATELIER_DISCORD_API_BASE (an emulator or proxy here).
    monkeypatch.setattr(discord.http.Route, "BASE", platform.url("api/v10"))
    fine = AttachmentRef("cat.png", platform.url("file"), 13, "image/png")
    assert await download(fine) == b"\x89PNG platform"
    for url in (platform.url("away"), foreign.url("attachments/1/2/cat.png")):
        with pytest.raises(InputImageError) as refused:
            await download(AttachmentRef("cat.png", url, 13, "image/png"))
        assert str(refused.value) == "that file is not on Discord's file servers, so I can't fetch it"
    assert foreign.requests == []
    assert all("Authorization" not in headers for _, headers in platform.requests)  # no token to a CDN
