"""A member's own defaults for `/imagine` (`/settings` on Discord, `/atelier settings` on Slack), and the styles
their server or workspace added, applied to what they typed. Platform-neutral: both chats call it once they have
acknowledged the request (it reads the database).

What was typed always wins: a default model, steps or style fills only an option left out, and the default
aspect ratio only when neither `--ar` nor `--size` was given.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from jobs.styles import Style
from storage.models import Tenant
from storage.settings import MemberSettings, settings_for, tenant_styles


@dataclass(frozen=True)
class MemberDefaults:
    settings: MemberSettings | None
    styles: dict[str, Style] = field(default_factory=dict)

    def apply(self, options: dict[str, object]) -> dict[str, object]:
        """`options` (merged flags and typed options) with the member's defaults where nothing was given."""
        settings = self.settings
        if settings is None:
            return dict(options)
        filled = dict(options)
        for name, value in (("model", settings.model), ("steps", settings.steps), ("style", settings.style)):
            if value and filled.get(name) is None:
                filled[name] = value
        if settings.aspect and filled.get("aspect") is None and filled.get("size") is None:
            filled["aspect"] = settings.aspect
        return filled


async def member_defaults(platform: str, tenant: Tenant, user_external_id: str) -> MemberDefaults:
    """The member's settings (None: all defaults) and the tenant's own styles."""
    settings = await settings_for(platform, tenant.external_id, user_external_id)
    return MemberDefaults(settings, await tenant_styles(tenant))
