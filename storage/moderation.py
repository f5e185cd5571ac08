"""Safety moderation records: channel policies, a server's prompt word list, and the review queue with its log.

- `ChannelPolicy`: what a channel does with a flagged image (`allow`, `spoiler`, `age-restricted`, `withhold`;
  jobs.moderation says what each means). The row with channel `*` is the server's default; a channel without a
  row follows it, and a server without one follows its `safety` preference (on: `age-restricted`, off: `allow`).
- `SafetyWord`: a word or a regular expression (`pattern=True`) that refuses a prompt before anything is queued
  (jobs.prompt_check), on top of the built-in list.
- `SafetyReview`: a withheld image waiting for a server admin (`decision` empty) or decided (`approved`,
  `deleted`) by `reviewer` at `decided_at`. A decided row stays as the log, even after its image row is
  deleted, so it keeps the image's id and key rather than a foreign key.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from tortoise import fields
from tortoise.models import Model

if TYPE_CHECKING:  # storage.models imports this module to register the models
    from storage.models import Tenant

SERVER_DEFAULT = "*"  # ChannelPolicy.channel of a server's default
POLICIES = ("allow", "spoiler", "age-restricted", "withhold")
MAX_WORD_CHARS = 200


class ChannelPolicy(Model):
    id = fields.IntField(primary_key=True)
    tenant: fields.ForeignKeyRelation[Tenant] = fields.ForeignKeyField(
        "models.Tenant", related_name="channel_policies", on_delete=fields.CASCADE
    )
    channel = fields.CharField(max_length=64)  # the platform's channel id, or SERVER_DEFAULT
    policy = fields.CharField(max_length=16)
    set_by = fields.CharField(max_length=64, default="")
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "channel_policies"
        table_description = "What a channel (or a server, channel '*') does with flagged images"
        unique_together = (("tenant", "channel"),)


class SafetyWord(Model):
    id = fields.IntField(primary_key=True)
    tenant: fields.ForeignKeyRelation[Tenant] = fields.ForeignKeyField(
        "models.Tenant", related_name="safety_words", on_delete=fields.CASCADE
    )
    text = fields.CharField(max_length=200)
    pattern = fields.BooleanField(default=False)  # a regular expression rather than a whole word
    added_by = fields.CharField(max_length=64, default="")
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "safety_words"
        table_description = "A server's words and patterns that refuse a prompt"
        unique_together = (("tenant", "text", "pattern"),)


class SafetyReview(Model):
    id = fields.IntField(primary_key=True)
    tenant: fields.ForeignKeyRelation[Tenant] = fields.ForeignKeyField(
        "models.Tenant", related_name="safety_reviews", on_delete=fields.CASCADE
    )
    image_id = fields.IntField(unique=True)  # one review per image, however often its job is delivered
    job_id = fields.CharField(max_length=32)
    blob_key = fields.CharField(max_length=255)
    channel = fields.CharField(max_length=64, default="")
    decision = fields.CharField(max_length=16, default="")  # "" while waiting; approved | deleted
    reviewer = fields.CharField(max_length=64, default="")
    created_at = fields.DatetimeField(auto_now_add=True)
    decided_at = fields.DatetimeField(null=True)

    class Meta:
        table = "safety_reviews"
        table_description = "Withheld images waiting for review, and the log of every decision"
        indexes = (("tenant_id", "decision"),)


def check_policy(policy: str) -> str:
    if policy not in POLICIES:
        raise ValueError(f"unknown safety policy {policy!r}; choose one of: {', '.join(POLICIES)}")
    return policy


def check_word(text: str, *, pattern: bool) -> str:
    """A word or pattern an admin gave, cleaned (a word in lower case), or ValueError naming the problem."""
    text = text.strip()
    if not text or len(text) > MAX_WORD_CHARS:
        raise ValueError(f"a word or pattern has 1 to {MAX_WORD_CHARS} characters")
    if pattern:
        try:
            re.compile(text)
        except re.error as error:
            raise ValueError(f"{text!r} is not a valid regular expression: {error}") from None
    return text if pattern else text.lower()


async def set_policy(tenant: Tenant, channel: str | None, policy: str, *, by: str = "") -> None:
    """Set a channel's policy (`channel` None: the server default)."""
    await ChannelPolicy.update_or_create(
        defaults={"policy": check_policy(policy), "set_by": by},
        tenant=tenant,
        channel=channel or SERVER_DEFAULT,
    )
