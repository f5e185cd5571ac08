"""A tenant's safety setting and reaction emoji, for admins (stored by `storage.preferences`)."""

from __future__ import annotations

from quotas.admin_tiers import TenantRef
from quotas.policy import tenant_for
from storage.preferences import MAX_EMOJI_CHARS, Preferences, preferences_of, update_preferences

REACTION_ACTIONS = ("upscale", "faces")  # what a configurable reaction can start


class PreferenceAdmin:
    """Reads and sets tenants' preferences."""

    async def preferences(self, tenant: TenantRef) -> Preferences:
        """The tenant's safety setting and reaction emoji (defaults until changed)."""
        return await preferences_of(await tenant_for(tenant))

    async def set_safety(self, tenant: TenantRef, on: bool) -> Preferences:
        """On: flagged images only in age-restricted places, as spoilers; off: posted like the others."""
        return await update_preferences(await tenant_for(tenant), safety=on)

    async def set_emoji(self, tenant: TenantRef, action: str, emoji: str) -> Preferences:
        """The reaction that starts `action` (`upscale` or `faces`) on an image; "" for the front-end's default."""
        if action not in REACTION_ACTIONS:
            raise ValueError(
                f"unknown reaction action {action!r}: choose one of {', '.join(REACTION_ACTIONS)}"
            )
        emoji = emoji.strip()
        if len(emoji) > 2 and emoji[0] == emoji[-1] == ":":  # a Slack reaction typed as :mag:
            emoji = emoji[1:-1]
        if len(emoji) > MAX_EMOJI_CHARS or any(c.isspace() for c in emoji):
            raise ValueError(
                f"{emoji!r} is not an emoji: give one emoji (or a Slack reaction name), no spaces"
            )
        current = await self.preferences(tenant)
        other = current.faces_emoji if action == "upscale" else current.upscale_emoji
        if emoji and emoji == other:
            raise ValueError(f"{emoji} already starts the other action: choose another emoji")
        return await update_preferences(await tenant_for(tenant), **{f"{action}_emoji": emoji})
