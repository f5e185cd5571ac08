"""Per-member settings and per-server styles, the editing loop's storage.

- `MemberSettings`: one member's defaults in one tenant (`/settings`): model, aspect, steps and style for
  `/imagine`; remix mode (vary, reroll, pan and zoom open a modal with the prompt before queueing); private mode
  (results go to the asker alone: ephemeral on Discord, a DM from the app on Slack); the lane (`fast`: refuse
  past the fast budget, `relax`: always the relax lane, empty: fast while the budget lasts, then relax). Empty or null means "the
  server's default"; a member without a row has every default.
- `TenantStyle`: a style an admin added (`/atelier style add`), beside the built-in ones (`jobs.styles`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tortoise import fields
from tortoise.models import Model

if TYPE_CHECKING:  # storage.models imports this module to register the models
    from storage.models import Tenant


class MemberSettings(Model):
    id = fields.IntField(primary_key=True)
    tenant: fields.ForeignKeyRelation[Tenant] = fields.ForeignKeyField(
        "models.Tenant", related_name="member_settings", on_delete=fields.CASCADE
    )
    user_external_id = fields.CharField(max_length=64)
    model = fields.CharField(max_length=64, default="")
    aspect = fields.CharField(max_length=16, default="")
    steps = fields.IntField(null=True)
    style = fields.CharField(max_length=32, default="")
    remix = fields.BooleanField(default=False)
    private = fields.BooleanField(default=False)
    lane = fields.CharField(max_length=8, default="", db_default="")  # "", "fast" or "relax" (jobs.relax)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "member_settings"
        table_description = "One member's defaults, remix and private mode in one tenant"
        unique_together = (("tenant", "user_external_id"),)


class TenantStyle(Model):
    id = fields.IntField(primary_key=True)
    tenant: fields.ForeignKeyRelation[Tenant] = fields.ForeignKeyField(
        "models.Tenant", related_name="styles", on_delete=fields.CASCADE
    )
    name = fields.CharField(max_length=32)
    prompt = fields.TextField()
    negative = fields.TextField()
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "tenant_styles"
        table_description = "A style (prompt template and negative prompt) an admin added"
        unique_together = (("tenant", "name"),)


SETTING_FIELDS = ("model", "aspect", "steps", "style", "remix", "private", "lane")


async def settings_for(
    platform: str, tenant_external_id: str, user_external_id: str
) -> MemberSettings | None:
    """The member's stored settings, or None when they changed none (or the tenant is unknown)."""
    return await MemberSettings.get_or_none(
        tenant__platform=platform, tenant__external_id=tenant_external_id, user_external_id=user_external_id
    )


async def member_lane(platform: str, tenant_external_id: str, user_external_id: str) -> str:
    """The lane the member chose in `/settings` (or `atelier lane`): fast, relax, or auto when they chose none."""
    settings = await settings_for(platform, tenant_external_id, user_external_id)
    return (settings.lane if settings else "") or "auto"


async def update_settings(tenant: Tenant, user_external_id: str, **changes: object) -> MemberSettings:
    """Set some of `SETTING_FIELDS`, creating the row on the first change (once, even under concurrent callers)."""
    unknown = set(changes) - set(SETTING_FIELDS)
    if unknown:
        raise ValueError(f"unknown settings: {', '.join(sorted(unknown))}")
    settings, _ = await MemberSettings.get_or_create(tenant=tenant, user_external_id=user_external_id)
    for name, value in changes.items():
        setattr(settings, name, value)
    await settings.save(update_fields=[*changes, "updated_at"])
    return settings


async def tenant_styles(tenant: Tenant) -> dict:
    """The tenant's own styles as `jobs.styles.Style`s by name."""
    from jobs.styles import Style

    rows = await TenantStyle.filter(tenant=tenant).order_by("name")
    return {row.name: Style(row.name, row.prompt, row.negative) for row in rows}
