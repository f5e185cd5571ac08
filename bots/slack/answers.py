"""Answers only the person who asked sees: how every listener tells someone what went wrong.

A request that came with a `response_url` (a slash command, a shortcut, a button) is answered through it; one
that did not (an event, a modal's submission) gets `chat.postEphemeral` in the channel, in the thread the work
would have gone to.

Each answer ends its request for the metrics (`metering.outcome`): a warning is `refused`, any other answer
`answered`; an answer that could not be delivered counts as a failed post.
"""

from __future__ import annotations

import logging

from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_sdk.web.async_client import AsyncWebClient

from bots.metrics import POSTS_FAILED, counted_post
from bots.slack.metering import outcome

log = logging.getLogger(__name__)


async def tell(respond: AsyncRespond, text: str) -> None:
    """An ephemeral answer through the request's response_url; the message it came from stays as it is."""
    outcome("answered")
    await _respond(respond, text)


async def warn(respond: AsyncRespond, problem: object) -> None:
    """`tell` a problem (a CommandError, usually), marked as a warning."""
    outcome("refused")
    await _respond(respond, f":warning: {problem}")


async def warn_in(
    client: AsyncWebClient, *, channel: str, user: str, thread_ts: str | None, problem: object
) -> None:
    """A warning only `user` sees in `channel` (in `thread_ts`), for requests without a response_url."""
    outcome("refused")
    with counted_post("slack"):
        await client.chat_postEphemeral(
            channel=channel, user=user, thread_ts=thread_ts, text=f":warning: {problem}"
        )


async def _respond(respond: AsyncRespond, text: str) -> None:
    with counted_post("slack"):
        sent = await respond(text=text, response_type="ephemeral", replace_original=False)
    if sent.status_code != 200:  # a response_url answers errors with a status, not an exception
        POSTS_FAILED.labels("slack").inc()
        log.warning("slack: an ephemeral answer was refused (%s): %s", sent.status_code, sent.body)
