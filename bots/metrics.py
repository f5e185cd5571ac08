"""Prometheus metrics of the chat front-ends, shared by both bots (workers have theirs in `jobs.metrics`).

Every request a person makes in chat (a slash command, a button, a shortcut, a reaction, a modal) is counted
once, under a `command` name from a fixed set (never something a person typed) and one outcome:

- `started`: a job was enqueued for it;
- `refused`: it was turned away with a message saying why (bad input, a quota, a ban, a paused server);
- `error`: something went wrong on our side;
- `answered`: an admin or information command answered without a job.

The first outcome said stands (`Tally`): a job started whose status message then fails to show is `started`,
not also `error`. The time to acknowledge, the platform's 429s and retries, and the bot's own posts that
failed are counted per platform; each bot's own module says where (`bots.discord.metering`,
`bots.slack.metering`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from prometheus_client import Counter, Histogram

OUTCOMES = ("started", "refused", "error", "answered")

COMMANDS = Counter(
    "atelier_bot_commands_total",
    "Requests from chat (commands, buttons, shortcuts, reactions), by platform, command and outcome.",
    ["platform", "command", "outcome"],
)
ACK_SECONDS = Histogram(
    "atelier_bot_ack_seconds",
    "Seconds from a request's arrival to its acknowledgement (Discord: defer or first answer; Slack: ack()).",
    ["platform"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10),
)
RATE_LIMITED = Counter(
    "atelier_platform_rate_limited_total", "Platform API responses that were HTTP 429.", ["platform"]
)
RETRIES = Counter(
    "atelier_platform_retries_total",
    "Platform API requests sent again (after a 429, a server error or a connection error).",
    ["platform"],
)
POSTS_FAILED = Counter(
    "atelier_bot_posts_failed_total",
    "The bot's own posts that failed: answers, refusals, status messages and their edits, withdrawals.",
    ["platform"],
)


def show_platform(platform: str) -> None:
    """Make `platform`'s per-platform series visible at 0 from the start: a series that first appears at 1
    hides that first increase from `rate()` and `increase()`."""
    ACK_SECONDS.labels(platform)
    for counter in (RATE_LIMITED, RETRIES, POSTS_FAILED):
        counter.labels(platform)


class Tally:
    """One request's outcome, counted once under its command's name: the first outcome said stands."""

    def __init__(self, platform: str, command: str) -> None:
        self.platform, self.command = platform, command
        self.outcome: str | None = None

    def say(self, outcome: str) -> None:
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {outcome!r}; known: {', '.join(OUTCOMES)}")
        if self.outcome is None:
            self.outcome = outcome
            COMMANDS.labels(self.platform, self.command, outcome).inc()


@contextlib.contextmanager
def counted_post(platform: str) -> Iterator[None]:
    """Around one of the bot's own posts: an exception counts it as failed, and goes on."""
    try:
        yield
    except Exception:
        POSTS_FAILED.labels(platform).inc()
        raise
