"""A small Discord REST client for workers: bot-token and interaction-webhook requests, with 429s respected.

Workers do not run discord.py's gateway client, only a handful of REST calls, so this talks to
`ATELIER_DISCORD_API_BASE` with aiohttp directly. A 429 is waited out (its `retry_after`, globally when Discord
says so) and retried, unless the caller says a retry is pointless (a progress frame: the next one replaces it).
A 429 without a `Via` header comes from Cloudflare, not Discord: the bot is banned for a while, so it raises at
once instead of hammering. An expired interaction token raises `TokenExpired`, never retried: invalid requests
count towards Discord's ban threshold.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Sequence

import aiohttp

from bots.discord.attachments import UploadFile

log = logging.getLogger(__name__)

USER_AGENT = "DiscordBot (https://github.com/atelier/atelier, 0.1)"
MAX_TRIES = 5
TOKEN_ERRORS = frozenset({50027, 10015})  # Invalid Webhook Token, Unknown Webhook


class DiscordHTTPError(Exception):
    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(f"Discord answered {status} (code {code}): {message}")
        self.status, self.code, self.message = status, code, message


class TokenExpired(DiscordHTTPError):
    """The interaction token is no longer valid (older than 15 minutes, or revoked)."""


class RateLimited(DiscordHTTPError):
    def __init__(self, status: int, code: int, message: str, retry_after: float) -> None:
        super().__init__(status, code, message)
        self.retry_after = retry_after


class DiscordRest:
    def __init__(self, token: str, api_base: str, *, timeout_s: float = 30.0) -> None:
        self._token = token
        self._base = api_base.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self._global_until = 0.0

    async def request(
        self,
        method: str,
        path: str,
        *,
        payload: dict | None = None,
        files: Sequence[UploadFile] = (),
        bot_auth: bool = True,
        retry_rate_limits: bool = True,
        retry_server_errors: bool = True,
        query: dict[str, str] | None = None,
    ) -> dict | list | None:
        """Send one request; return the JSON answer (None for 204). Interaction-webhook paths pass
        `bot_auth=False`: they are authorised by the token in the path. A 5xx is retried unless
        `retry_server_errors` is false: a caller whose request is not idempotent (a webhook post, which has no
        nonce: Discord may have done it before failing) checks before sending it again."""
        headers = {"User-Agent": USER_AGENT}
        if bot_auth:
            headers["Authorization"] = f"Bot {self._token}"
        for attempt in range(1, MAX_TRIES + 1):
            await self._wait_global()
            body = _body(payload, files)
            if isinstance(body, str):
                headers["Content-Type"] = "application/json"
            async with self._client().request(
                method, self._base + path, data=body, headers=headers, params=query
            ) as response:
                text = await response.text()
                if response.status < 300:
                    return json.loads(text) if text else None
                data = _json_or_none(text)
                code = int(data.get("code", 0)) if data else 0
                message = str(data.get("message", text[:200])) if data else text[:200]
                if response.status == 429:
                    if "Via" not in response.headers:
                        raise DiscordHTTPError(429, code, "banned by Cloudflare: too many invalid requests")
                    retry_after = float(
                        (data or {}).get("retry_after") or response.headers.get("Retry-After", 1)
                    )
                    if (data or {}).get("global"):
                        self._global_until = time.monotonic() + retry_after
                    if not retry_rate_limits or attempt == MAX_TRIES:
                        raise RateLimited(429, code, message, retry_after)
                    log.info("discord: 429 on %s %s, retrying in %.2f s", method, _redact(path), retry_after)
                    await asyncio.sleep(retry_after)
                    continue
                if response.status in (401, 404) and code in TOKEN_ERRORS:
                    raise TokenExpired(response.status, code, message)
                if response.status >= 500 and retry_server_errors and attempt < MAX_TRIES:
                    await asyncio.sleep(min(2**attempt, 10))
                    continue
                raise DiscordHTTPError(response.status, code, message)
        raise AssertionError("unreachable")  # the loop returns or raises

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def _wait_global(self) -> None:
        delay = self._global_until - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)


def _body(payload: dict | None, files: Sequence[UploadFile]) -> str | aiohttp.FormData | None:
    """JSON, or Discord's multipart form (`payload_json` plus `files[n]`) when there are files."""
    if not files:
        return json.dumps(payload) if payload is not None else None
    form = aiohttp.FormData()
    form.add_field("payload_json", json.dumps(payload or {}), content_type="application/json")
    for index, upload in enumerate(files):
        form.add_field(
            f"files[{index}]", upload.data, filename=upload.filename, content_type=upload.content_type
        )
    return form


def _json_or_none(text: str) -> dict | None:
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _redact(path: str) -> str:
    """A path fit for logs: an interaction token is a credential while it lives."""
    parts = path.split("/")
    if len(parts) > 3 and parts[1] == "webhooks":
        parts[3] = "<token>"
    return "/".join(parts)
