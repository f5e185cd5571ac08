"""The Web API client both the app and the worker's replier use: the configured base URL, and 429s retried.

slack_sdk retries only connection errors by default; a rate-limited call (HTTP 429) is retried here after the
`Retry-After` the platform sent, a few times, instead of failing the edit or the upload. Every 429 and every
retry is counted (`bots.metrics`): `RateLimitCounter` sees each response first, `CountedRetries` wraps each
handler that retries.
"""

from __future__ import annotations

from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncRateLimitErrorRetryHandler,
    async_default_handlers,
)
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.web.async_client import AsyncWebClient

from bots.metrics import RATE_LIMITED, RETRIES
from bots.slack.config import DEFAULT_API_BASE

RATE_LIMIT_RETRIES = 3


def web_client(token: str, api_base: str = DEFAULT_API_BASE) -> AsyncWebClient:
    """An `AsyncWebClient` for `token` on `api_base` (which must end with a slash, as SlackConfig ensures)."""
    retrying = [
        *async_default_handlers(),
        AsyncRateLimitErrorRetryHandler(max_retry_count=RATE_LIMIT_RETRIES),
    ]
    return AsyncWebClient(
        token=token,
        base_url=api_base,
        retry_handlers=[RateLimitCounter(), *map(CountedRetries, retrying)],
    )


class RateLimitCounter(AsyncRetryHandler):
    """A retry handler that never retries: first in the list, it sees every response and counts the 429s."""

    async def can_retry_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if error is None and response is not None and response.status_code == 429:
            RATE_LIMITED.labels("slack").inc()
        return False


class CountedRetries(AsyncRetryHandler):
    """`handler`, counting each retry it makes."""

    def __init__(self, handler: AsyncRetryHandler) -> None:
        super().__init__(handler.max_retry_count, handler.interval_calculator)
        self.handler = handler

    async def can_retry_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        return await self.handler.can_retry_async(
            state=state, request=request, response=response, error=error
        )

    async def prepare_for_next_attempt_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> None:
        await self.handler.prepare_for_next_attempt_async(
            state=state, request=request, response=response, error=error
        )
        RETRIES.labels("slack").inc()
