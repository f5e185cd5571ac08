"""Answers only the person who asked sees: how every listener tells someone what went wrong.

A request that came with a `response_url` (a slash command, a shortcut, a button) is answered through it; one
that did not (an event, a modal's submission) gets `chat.postEphemeral` in the channel, in the thread the work
would have gone to.
"""

from __future__ import annotations

from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_sdk.web.async_client import AsyncWebClient


async def tell(respond: AsyncRespond, text: str) -> None:
    """An ephemeral answer through the request's response_url; the message it came from stays as it is."""
    await respond(text=text, response_type="ephemeral", replace_original=False)


async def warn(respond: AsyncRespond, problem: object) -> None:
    """`tell` a problem (a CommandError, usually), marked as a warning."""
    await tell(respond, f":warning: {problem}")


async def warn_in(
    client: AsyncWebClient, *, channel: str, user: str, thread_ts: str | None, problem: object
) -> None:
    """A warning only `user` sees in `channel` (in `thread_ts`), for requests without a response_url."""
    await client.chat_postEphemeral(
        channel=channel, user=user, thread_ts=thread_ts, text=f":warning: {problem}"
    )
