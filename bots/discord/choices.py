"""Autocomplete answers: the values that contain what the member has typed so far, as Discord choices."""

from __future__ import annotations

from collections.abc import Iterable

from discord import app_commands

MAX_CHOICES = 25  # Discord shows at most 25 autocomplete choices


def choices(values: Iterable[str], current: str) -> list[app_commands.Choice[str]]:
    typed = current.lower().strip()
    return [app_commands.Choice(name=v, value=v) for v in values if typed in v.lower()][:MAX_CHOICES]
