"""Persistent buttons: registered once at start-up, so they work on any message, however old.

Each button is a `DynamicItem` (the Cancel button in `cancel`, the result buttons in `results`, the editing
loop's in `loop`): discord.py
matches a clicked custom id against their templates, and the id carries all the state (`atelier:<action>:<job
id>:<index>`), so no view is kept in memory and a restart of the bot or a worker breaks nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bots.discord.cancel import CancelButton
from bots.discord.loop import LoopButton
from bots.discord.results import ResultButton

if TYPE_CHECKING:
    from bots.discord.client import AtelierBot


def setup(bot: AtelierBot) -> None:
    bot.add_dynamic_items(CancelButton, ResultButton, LoopButton)
