"""The Web API client both the app and the worker's replier use: the configured base URL, and 429s retried.

slack_sdk retries only connection errors by default; a rate-limited call (HTTP 429) is retried here after the
`Retry-After` the platform sent, a few times, instead of failing the edit or the upload.
"""

from __future__ import annotations

from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncRateLimitErrorRetryHandler,
    async_default_handlers,
)
from slack_sdk.web.async_client import AsyncWebClient

from bots.slack.config import DEFAULT_API_BASE

RATE_LIMIT_RETRIES = 3


def web_client(token: str, api_base: str = DEFAULT_API_BASE) -> AsyncWebClient:
    """An `AsyncWebClient` for `token` on `api_base` (which must end with a slash, as SlackConfig ensures)."""
    return AsyncWebClient(
        token=token,
        base_url=api_base,
        retry_handlers=[
            *async_default_handlers(),
            AsyncRateLimitErrorRetryHandler(max_retry_count=RATE_LIMIT_RETRIES),
        ],
    )
