"""The safety filter in Slack: what happens to images the model's safety checker flagged (engine.safety).

Slack has no counterpart of Discord's age-restricted channels, so while a workspace's filter is on (the
default; `/atelier safety on|off`, stored in its preferences) a flagged image is withheld everywhere: not
uploaded, no buttons, and a line in the thread says how many were and how an admin turns the filter off. With
the filter off they are posted like any other. Reactions on a results message never act on a withheld image.
"""

from __future__ import annotations

from storage.models import Tenant
from storage.preferences import preferences_of


async def withholds_flagged(tenant_id: int | None) -> bool:
    """Whether the workspace (tenant `tenant_id`) withholds flagged images; a job without one does."""
    tenant = await Tenant.get_or_none(id=tenant_id) if tenant_id is not None else None
    return tenant is None or (await preferences_of(tenant)).safety
