"""Where a Discord job's replies go: the job's `reply_target.data`, written by the bot, read by the worker.

The status message is the original response of the interaction that asked (the `/imagine` command or a reroll
click). Its interaction token can edit it for 15 minutes; after `TOKEN_USABLE_S` (a minute of margin) the worker
uses bot-token channel endpoints instead, so a job that waited in the queue still delivers. The token is stored
with the job for that reason; it is worthless once expired.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

DISCORD_EPOCH_MS = 1_420_070_400_000
TOKEN_LIFETIME_S = 15 * 60
TOKEN_USABLE_S = 14 * 60
DEFAULT_ATTACHMENT_LIMIT = 10 * 1024 * 1024
"""Bytes per uploaded file when the interaction does not say (Discord's default for unboosted guilds)."""


def snowflake_time(snowflake: int) -> float:
    """The UNIX time (seconds) a Discord id was minted at."""
    return ((snowflake >> 22) + DISCORD_EPOCH_MS) / 1000


@dataclass(frozen=True)
class DiscordTarget:
    application_id: int
    interaction_id: int
    token: str
    channel_id: int  # where the status message is (a channel, or a thread for a reroll inside one)
    message_id: int  # the status message: the interaction's original response
    user_id: int  # who asked: mentioned in the result, allowed to cancel and delete
    guild_id: int | None = None
    thread_id: int | None = None  # the job's thread, where results go; None: next to the status message
    attachment_size_limit: int = DEFAULT_ATTACHMENT_LIMIT
    prompt: str = ""  # shown on every status edit
    reply_to: int | None = None  # the message results reply to when there is no thread (a reacted-to message)
    age_restricted: bool = False  # asked in an age-restricted channel: flagged images may be shown (`safety`)
    private: bool = False  # the asker's private mode: status and results are ephemeral, never in the channel

    @property
    def token_created_at(self) -> float:
        return snowflake_time(self.interaction_id)

    def token_usable(self, now: float | None = None) -> bool:
        """Whether the interaction token may still be used (younger than 14 of its 15 minutes); a job started
        without an interaction (a reaction) has none."""
        if not self.token:
            return False
        return (time.time() if now is None else now) - self.token_created_at < TOKEN_USABLE_S

    def to_data(self) -> dict:
        """JSON-safe form: ids as strings, as Discord writes them (64-bit ints lose precision in JavaScript)."""
        data = asdict(self)
        for name in (
            "application_id",
            "interaction_id",
            "channel_id",
            "message_id",
            "user_id",
            "guild_id",
            "thread_id",
            "reply_to",
        ):
            if data[name] is not None:
                data[name] = str(data[name])
        return data

    @classmethod
    def from_data(cls, data: dict) -> DiscordTarget:
        def snowflake(name: str) -> int | None:
            value = data.get(name)
            return int(value) if value is not None else None

        return cls(
            application_id=int(data["application_id"]),
            interaction_id=int(data["interaction_id"]),
            token=data["token"],
            channel_id=int(data["channel_id"]),
            message_id=int(data["message_id"]),
            user_id=int(data["user_id"]),
            guild_id=snowflake("guild_id"),
            thread_id=snowflake("thread_id"),
            attachment_size_limit=int(data.get("attachment_size_limit") or DEFAULT_ATTACHMENT_LIMIT),
            prompt=data.get("prompt", ""),
            reply_to=snowflake("reply_to"),
            age_restricted=bool(data.get("age_restricted", False)),
            private=bool(data.get("private", False)),
        )
