"""Downloads of what users name (Slack files, Discord attachments), from the platform's own file servers only.

A URL a user can influence is a token-leak and SSRF risk: Slack's `files.info` names any host for external files
(remote files, Google Drive), and a redirect can lead anywhere, internal addresses included. So every download
of user-supplied content on either platform goes through `fetch`, with the `Sources` of its platform:

- the URL must be https on one of the platform's file hosts (`SLACK_FILE_HOSTS`, `DISCORD_FILE_HOSTS`), or on
  the origin (scheme, host and port) of the configured API base: an emulator or a proxy, the one place where
  plain http is accepted, because the operator configured it;
- redirects are followed here, not by aiohttp: at most `MAX_REDIRECTS`, and only to the same host, itself
  allowed (never to another host, never from https down to http);
- the bot token, when given, goes with each of these requests and so only to the platform's own hosts (the
  configured base already receives it with every API call);
- the byte limit is enforced while streaming, so an oversized or lying file is cut off, not read into memory.

A refusal is a `FetchError` whose message can be shown as it is; none names an address.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import aiohttp

SLACK_FILE_HOSTS = frozenset({"files.slack.com", "files.slack-gov.com"})  # Slack and GovSlack
DISCORD_FILE_HOSTS = frozenset({"cdn.discordapp.com", "media.discordapp.net"})
MAX_REDIRECTS = 3
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
DOWNLOAD_TIMEOUT_S = 60
CHUNK_BYTES = 64 * 1024
DEFAULT_PORTS = {"http": 80, "https": 443}

Origin = tuple[str, str, int]  # scheme, host (lowercase), port


class FetchError(Exception):
    """A download that did not happen; the message names the file, never an address."""


class NotAllowed(FetchError):
    """The URL (or a redirect) leads off the platform's file servers."""


class BadStatus(FetchError):
    """The file server answered something other than 200 or a redirect."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class TooLarge(FetchError):
    """The file turned out larger than the limit while streaming."""


@dataclass(frozen=True)
class Download:
    data: bytes
    content_type: str


@dataclass(frozen=True)
class Sources:
    """Where one platform's files may be fetched from: its file hosts over https, and the origin of the configured
    API base (an emulator or proxy, http allowed there)."""

    platform: str  # "Slack", "Discord": how refusals name the file servers
    hosts: frozenset[str]
    configured: Origin | None = None

    @classmethod
    def of(cls, platform: str, hosts: Iterable[str], api_base: str | None) -> Sources:
        configured = origin(api_base) if api_base else None
        if configured is not None and configured[0] not in DEFAULT_PORTS:
            configured = None
        return cls(platform, frozenset(hosts), configured)

    def allows(self, url: str) -> bool:
        """Whether `url` is on this platform's file servers (or the configured base's origin)."""
        where = origin(url)
        if where is None:
            return False
        if where == self.configured:
            return True
        scheme, host, port = where
        return scheme == "https" and port == 443 and host in self.hosts

    def refusal(self) -> str:
        return f"that file is not on {self.platform}'s file servers, so I can't fetch it"


def slack_sources(api_base: str | None) -> Sources:
    """Slack's file hosts, and the origin of `ATELIER_SLACK_API_BASE` (an emulator or proxy)."""
    return Sources.of("Slack", SLACK_FILE_HOSTS, api_base)


def discord_sources(api_base: str | None) -> Sources:
    """Discord's CDN hosts, and the origin of `ATELIER_DISCORD_API_BASE` (an emulator or proxy)."""
    return Sources.of("Discord", DISCORD_FILE_HOSTS, api_base)


def origin(url: str) -> Origin | None:
    """(scheme, host, port) of an absolute http(s) URL; None for anything else (no host, credentials in it, a
    port that is not a number)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname or parts.username is not None:
        return None
    return scheme, parts.hostname.lower().rstrip("."), port or DEFAULT_PORTS[scheme]


async def fetch(
    url: str, sources: Sources, *, name: str, max_bytes: int, token: str | None = None
) -> Download:
    """The body of `url` (a 200 answer, at most `max_bytes`), fetched from `sources` only, with the bot token
    `token` as `Authorization: Bearer` when given. Every failure is a `FetchError`."""
    if not sources.allows(url):
        raise NotAllowed(sources.refusal())
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    timeout = aiohttp.ClientTimeout(total=DOWNLOAD_TIMEOUT_S)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            for _ in range(MAX_REDIRECTS + 1):
                async with session.get(url, headers=headers, allow_redirects=False) as response:
                    if response.status in REDIRECT_STATUSES:
                        url = _redirect(url, response.headers.get("Location"), sources)
                        continue
                    if response.status != 200:
                        raise BadStatus(
                            f"I could not download {name} ({sources.platform} answered {response.status})",
                            response.status,
                        )
                    return Download(await _read(response, name, max_bytes), response.content_type)
            raise FetchError(f"I could not download {name}: too many redirects")
    except aiohttp.ClientConnectionError:
        raise FetchError(
            f"I could not download {name}: {sources.platform}'s file server did not answer"
        ) from None
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise FetchError(f"I could not download {name}: {type(exc).__name__}") from None


def _redirect(url: str, location: str | None, sources: Sources) -> str:
    """Where a redirect from `url` leads, when that is allowed: the same host, itself on the file servers."""
    target = urljoin(url, location or "")
    here, there = origin(url), origin(target)
    if not location or there is None or here is None or there[1] != here[1] or not sources.allows(target):
        raise NotAllowed(sources.refusal())
    return target


async def _read(response: aiohttp.ClientResponse, name: str, max_bytes: int) -> bytes:
    chunks, size = [], 0
    async for chunk in response.content.iter_chunked(CHUNK_BYTES):
        size += len(chunk)
        if size > max_bytes:  # a declared size lied, or there was none: stop reading here
            raise TooLarge(f"{name} is larger than the limit of {max_bytes / 2**20:.0f} MiB")
        chunks.append(chunk)
    return b"".join(chunks)
