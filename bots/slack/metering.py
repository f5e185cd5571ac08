"""What the Slack app counts (see `bots.metrics`): each request's outcome and the time to `ack()` it.

`meter_requests`, the first global middleware, names the request (a command from the app's own fixed set,
never what someone typed) and swaps in a `TimedAck`, which observes the seconds from the request reaching the
app to `ack()` (bolt sends the acknowledgement then; for events bolt acks by itself, through the same ack).
The listeners run in tasks started after the middleware, so they inherit its `Tally` through a context
variable: the places where a request ends say `outcome(...)` without being handed anything (`answers`:
`refused`, `answered`; `submit.post_status`: `started`), and `listener_failed`, the app's error handler, says
`error`. A modal submission answered with field errors is `refused`.

The Web API client's 429s and retries are counted by its retry handlers (`client`).
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.response import BoltResponse

from bots.metrics import ACK_SECONDS, Tally
from bots.slack import ids

SLASH_COMMANDS = frozenset({"imagine", "upscale", "inpaint", "atelier"})
SHORTCUTS = frozenset(
    {"upscale", "enhance_faces", "inpaint", "train_lora"}
)  # message shortcuts' callback ids
MODALS = frozenset({"inpaint_modal", "train_lora_modal"})
BUTTONS = frozenset(ids.ACTIONS)
EVENTS = {"app_mention": "mention", "reaction_added": "reaction"}

_tally: contextvars.ContextVar[Tally | None] = contextvars.ContextVar("atelier_slack_tally", default=None)


def command_name(body: dict) -> str:
    """The request's command for the metrics: `imagine`, `reroll_button`, `inpaint_shortcut`, `inpaint_modal`,
    `mention`, … or `other`."""
    kind = body.get("type")
    if "command" in body:
        name = str(body["command"]).removeprefix("/")
        return name if name in SLASH_COMMANDS else "other"
    if kind == "block_actions":
        action_id = str(((body.get("actions") or [{}])[0]).get("action_id", ""))
        action = action_id.split(":", 1)[0]
        return f"{action}_button" if action in BUTTONS else "other"
    if kind == "message_action":
        callback_id = body.get("callback_id")
        return f"{callback_id}_shortcut" if callback_id in SHORTCUTS else "other"
    if kind == "view_submission":
        callback_id = (body.get("view") or {}).get("callback_id")
        return callback_id if callback_id in MODALS else "other"
    if kind == "event_callback":
        return EVENTS.get((body.get("event") or {}).get("type", ""), "other")
    return "other"


def outcome(said: str) -> None:
    """Count the current request's outcome (`bots.metrics.OUTCOMES`; the first said stands). Outside a
    request (the worker's replier), nothing."""
    tally = _tally.get()
    if tally is not None:
        tally.say(said)


class TimedAck(AsyncAck):
    """bolt's `ack()`, observing the seconds since `received` the first time it is called."""

    def __init__(self, received: float) -> None:
        super().__init__()
        self.received = received

    async def __call__(self, *args: Any, **kwargs: Any) -> BoltResponse:
        if self.response is None:
            ACK_SECONDS.labels("slack").observe(time.monotonic() - self.received)
            if kwargs.get("response_action") == "errors":  # a modal's fields said what is wrong
                outcome("refused")
        return await super().__call__(*args, **kwargs)


async def meter_requests(body: dict, context: AsyncBoltContext, next: Callable[[], Awaitable[None]]) -> None:
    """Global middleware, first: name the request for `outcome` and time its `ack()`."""
    _tally.set(Tally("slack", command_name(body)))
    context["ack"] = TimedAck(time.monotonic())
    await next()


async def listener_failed(error: Exception, logger: logging.Logger) -> None:
    """The app's error handler: the request is an `error`; logged as bolt's own handler does."""
    outcome("error")
    logger.exception("Failed to run listener function (error: %s)", error)
