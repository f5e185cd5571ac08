"""A tenant's preferences: what a server's (or workspace's) admins choose for it, beside its quotas.

- `safety`: whether images the model's safety checker flags (engine.safety) are held back. On (the default),
  the front-ends post a flagged image only where the platform marks the place as adult (a Discord channel
  marked age-restricted), and as a spoiler; elsewhere they withhold it and say why. Off: posted like any other.
- `upscale_emoji`, `faces_emoji`: the reactions that start an upscale or a face restoration of an image; empty
  means the front-end's configured default (🔍 and ✨ on Discord, `mag` and `sparkles` on Slack).

A tenant without a row has the defaults; the row is written on the first change (`atelier admin safety|emoji`
or the chat `/atelier safety|emoji`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tortoise import fields
from tortoise.models import Model

if TYPE_CHECKING:  # storage.models imports this module to register the model
    from storage.models import Tenant

MAX_EMOJI_CHARS = 64  # a Slack reaction name or a Discord emoji (unicode, or <:name:id> for a custom one)


class Preferences(Model):
    id = fields.IntField(primary_key=True)
    tenant: fields.OneToOneRelation[Tenant] = fields.OneToOneField(
        "models.Tenant", related_name="preferences", on_delete=fields.CASCADE
    )
    safety = fields.BooleanField(default=True)
    upscale_emoji = fields.CharField(max_length=MAX_EMOJI_CHARS, default="")
    faces_emoji = fields.CharField(max_length=MAX_EMOJI_CHARS, default="")
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "preferences"
        table_description = "A tenant's choices: safety filter, reaction emoji"


async def preferences_of(tenant: Tenant) -> Preferences:
    """The tenant's stored preferences, or unsaved defaults when it has changed none."""
    stored = await Preferences.get_or_none(tenant=tenant)
    return stored if stored is not None else Preferences(tenant=tenant)


async def update_preferences(tenant: Tenant, **changes: object) -> Preferences:
    """Set some fields, creating the row on the first change (once, even under concurrent callers)."""
    preferences, _ = await Preferences.get_or_create(tenant=tenant)
    for name, value in changes.items():
        setattr(preferences, name, value)
    await preferences.save(update_fields=[*changes, "updated_at"])
    return preferences
