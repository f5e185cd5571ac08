"""`/settings`: a member's own defaults in this server, on an ephemeral panel only they see.

Select menus for the default model, aspect ratio, steps and style of `/imagine`, and two toggles: remix mode
(vary, reroll, pan and zoom open a modal with the prompt before they queue, `loop`) and private mode (results
are ephemeral, for the asker alone; nothing is posted in the channel), and a button that cycles the lane (auto:
fast while the fast budget lasts, then relax where the tier allows; relax: always the relax lane; fast: refused
past the budget; jobs.relax; Discord allows five rows, so not a sixth select). Every change is stored at once
(`storage.settings`) and the panel is redrawn. The panel's components carry their meaning in their custom ids
(`atelier:settings:<field>`), so a click on an old panel still works after a restart.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands

from bots.discord import admin
from bots.discord.imagine import ASPECTS
from bots.discord.launch import refuse
from bots.discord.metering import answering
from jobs.styles import BUILT_IN, check_style
from storage.models import get_or_create_tenant
from storage.settings import MemberSettings, TenantStyle, settings_for, tenant_styles, update_settings

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from bots.discord.client import AtelierBot

DEFAULT = "default"  # the select option meaning "the server's default"
STEP_CHOICES = (4, 10, 20, 30, 40, 50)
SELECTS = ("model", "aspect", "steps", "style")
TOGGLES = ("remix", "private")
LANES = ("", "relax", "fast")  # the lane button's cycle; "" is auto
SETTINGS_TEMPLATE = rf"atelier:settings:(?P<field>{'|'.join((*SELECTS, *TOGGLES, 'lane'))})"
MAX_OPTIONS = 25  # Discord's limit per select menu


def settings_text(settings: MemberSettings | None) -> str:
    if settings is None:
        return "⚙️ Your settings in this server: all defaults. Change them below; only you see this."
    parts = [
        f"model **{settings.model or DEFAULT}**",
        f"aspect **{settings.aspect or DEFAULT}**",
        f"steps **{settings.steps or DEFAULT}**",
        f"style **{settings.style or 'none'}**",
        f"remix **{'on' if settings.remix else 'off'}**",
        f"private **{'on' if settings.private else 'off'}**",
        f"lane **{settings.lane or 'auto'}**",
    ]
    return "⚙️ Your settings in this server: " + ", ".join(parts) + ". Only you see this."


async def panel(
    bot: AtelierBot, guild_id: int, settings: MemberSettings | None
) -> list[discord.ui.ActionRow]:
    """The panel's rows: four selects, then the two toggles."""
    tenant = await get_or_create_tenant("discord", str(guild_id))
    styles = sorted({*BUILT_IN, *(await tenant_styles(tenant))})
    current = {
        "model": settings.model if settings else "",
        "aspect": settings.aspect if settings else "",
        "steps": str(settings.steps) if settings and settings.steps else "",
        "style": settings.style if settings else "",
    }
    choices = {
        "model": bot.config.registry.names("txt2img"),
        "aspect": list(ASPECTS),
        "steps": [str(steps) for steps in STEP_CHOICES],
        "style": styles,
    }
    rows = []
    for field in SELECTS:
        options = [
            discord.SelectOption(label=f"{field}: server default", value=DEFAULT, default=not current[field])
        ]
        options += [
            discord.SelectOption(label=f"{field}: {value}", value=value, default=value == current[field])
            for value in choices[field][: MAX_OPTIONS - 1]
        ]
        select = discord.ui.Select(custom_id=f"atelier:settings:{field}", options=options)
        rows.append(discord.ui.ActionRow(select))
    toggles = []
    for field in TOGGLES:
        on = bool(settings and getattr(settings, field))
        style = discord.ButtonStyle.success if on else discord.ButtonStyle.secondary
        label = f"{field.title()}: {'on' if on else 'off'}"
        toggles.append(discord.ui.Button(custom_id=f"atelier:settings:{field}", label=label, style=style))
    lane = (settings.lane if settings else "") or "auto"
    toggles.append(
        discord.ui.Button(
            custom_id="atelier:settings:lane", label=f"Lane: {lane}", style=discord.ButtonStyle.secondary
        )
    )
    rows.append(discord.ui.ActionRow(*toggles))
    return rows


def _view(rows: list[discord.ui.ActionRow]) -> discord.ui.View:
    """The rows as a view that discord.py only serialises: clicks go to `SettingsItem`, so it is stopped (not
    kept in memory, one per panel ever shown)."""
    view = discord.ui.View(timeout=None)
    for row_number, row in enumerate(rows):
        for item in row.children:
            item.row = row_number
            view.add_item(item)
    view.stop()
    return view


@app_commands.command(
    name="settings", description="Your defaults, remix mode and private mode in this server"
)
@app_commands.guild_only()
async def settings_command(interaction: discord.Interaction[AtelierBot]) -> None:
    if interaction.guild_id is None:
        await refuse(interaction, "/settings works in a server, not in direct messages.")
        return
    with answering(interaction):
        settings = await settings_for("discord", str(interaction.guild_id), str(interaction.user.id))
        rows = await panel(interaction.client, interaction.guild_id, settings)
        await interaction.response.send_message(settings_text(settings), view=_view(rows), ephemeral=True)


async def on_settings_component(interaction: discord.Interaction[AtelierBot], field: str) -> None:
    """A select or toggle of the panel: store the change, redraw the panel in place."""
    assert interaction.guild_id is not None
    guild = str(interaction.guild_id)
    settings = await settings_for("discord", guild, str(interaction.user.id))
    if field in TOGGLES:
        value: Any = not (settings is not None and getattr(settings, field))
    elif field == "lane":
        now = settings.lane if settings is not None and settings.lane in LANES else ""
        value = LANES[(LANES.index(now) + 1) % len(LANES)]
    else:
        chosen = ((interaction.data or {}).get("values") or [DEFAULT])[0]
        try:
            value = _checked(interaction.client, field, chosen, guild)
        except ValueError as exc:
            await refuse(interaction, str(exc))
            return
        if field == "style" and value and value not in BUILT_IN:
            tenant = await get_or_create_tenant("discord", guild)
            if value not in await tenant_styles(tenant):
                await refuse(interaction, f"unknown style {value!r}")
                return
    tenant = await get_or_create_tenant("discord", guild)
    settings = await update_settings(tenant, str(interaction.user.id), **{field: value})
    modes = getattr(interaction.client, "private_modes", None)
    if modes is not None:
        modes.set(interaction.guild_id, interaction.user.id, settings.private)
    rows = await panel(interaction.client, interaction.guild_id, settings)
    await interaction.response.edit_message(content=settings_text(settings), view=_view(rows))


def _checked(bot: AtelierBot, field: str, chosen: str, guild: str) -> Any:
    """The stored value for a select's choice ("" or None for the default); a value not on offer is refused."""
    if chosen == DEFAULT:
        return None if field == "steps" else ""
    if field == "model" and chosen not in bot.config.registry.names("txt2img"):
        raise ValueError(f"unknown model {chosen[:40]!r}")
    if field == "aspect" and chosen not in ASPECTS:
        raise ValueError(f"aspect must be one of {', '.join(ASPECTS)}")
    if field == "steps":
        if not chosen.isdigit() or int(chosen) not in STEP_CHOICES:
            raise ValueError(f"steps must be one of {', '.join(map(str, STEP_CHOICES))}")
        return int(chosen)
    return chosen


class SettingsItem(discord.ui.DynamicItem[discord.ui.Button], template=SETTINGS_TEMPLATE):
    """Any select or toggle of a settings panel, however old."""

    def __init__(self, item: discord.ui.Item[Any], field: str) -> None:
        super().__init__(item)  # type: ignore[arg-type]
        self.field = field

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> SettingsItem:
        return cls(item, match["field"])

    async def callback(self, interaction: discord.Interaction[AtelierBot]) -> None:
        with answering(interaction):
            await on_settings_component(interaction, self.field)


style_group = app_commands.Group(
    name="style",
    description="This server's styles: named prompt templates (--style NAME)",
    parent=admin.group,
)


@style_group.command(name="list", description="The styles anyone here can use with --style NAME")
async def style_list(interaction: discord.Interaction[AtelierBot]) -> None:
    tenant = await get_or_create_tenant("discord", str(interaction.guild_id))
    own = await tenant_styles(tenant)
    lines = [
        f"• `{style.name}`: {style.prompt}" + (f" (no: {style.negative})" if style.negative else "")
        for style in own.values()
    ]
    built_in = ", ".join(f"`{name}`" for name in BUILT_IN)
    text = (
        "\n".join([*lines, f"Built in: {built_in}"])
        if lines
        else f"No styles of this server yet. Built in: {built_in}"
    )
    await interaction.response.send_message(text[:2000], ephemeral=True)


@style_group.command(name="add", description="Add or replace a style of this server (admins)")
@app_commands.describe(
    name="Lower-case letters, digits, - or _",
    prompt="The template: {prompt} is what was typed",
    negative="What to avoid",
)
async def style_add(
    interaction: discord.Interaction[AtelierBot], name: str, prompt: str, negative: str = ""
) -> None:
    if not await admin.admin_only(interaction, "add styles"):
        return
    try:
        style = check_style(name, prompt, negative)
    except ValueError as exc:
        await refuse(interaction, str(exc))
        return
    tenant = await get_or_create_tenant("discord", str(interaction.guild_id))
    await TenantStyle.update_or_create(
        defaults={"prompt": style.prompt, "negative": style.negative}, tenant=tenant, name=style.name
    )
    await interaction.response.send_message(
        f"Style `{style.name}` saved: use `--style {style.name}`.", ephemeral=True
    )


@style_group.command(name="delete", description="Delete a style of this server (admins)")
async def style_delete(interaction: discord.Interaction[AtelierBot], name: str) -> None:
    if not await admin.admin_only(interaction, "delete styles"):
        return
    tenant = await get_or_create_tenant("discord", str(interaction.guild_id))
    if not await TenantStyle.filter(tenant=tenant, name=name.strip().lower()).delete():
        await refuse(interaction, f"this server has no style {name.strip()[:40]!r}")
        return
    await interaction.response.send_message(f"Style `{name.strip().lower()}` deleted.", ephemeral=True)


class PrivateModes:
    """The members in private mode, held in memory: the deferral must know before Discord's 3 s deadline whether
    to be ephemeral, and reads nothing for it (a database read per command, before the acknowledgement, made a
    burst of 500 /imagine take 1.2 s to acknowledge). Loaded whole when the bot starts (only the members who
    turned it on), read again every `REFRESH_S` for changes made by another process, and changed at once by this
    bot's own /settings. Until the first load answers, nobody is private: a member's results stay where they
    were before they chose."""

    REFRESH_S = 30.0

    def __init__(self) -> None:
        self._private: frozenset[tuple[int, int]] = frozenset()

    def is_private(self, guild_id: int, user_id: int) -> bool:
        return (guild_id, user_id) in self._private

    def set(self, guild_id: int, user_id: int, private: bool) -> None:
        key = (guild_id, user_id)
        self._private = self._private | {key} if private else self._private - {key}

    async def load(self) -> None:
        rows = await MemberSettings.filter(private=True, tenant__platform="discord").values_list(
            "tenant__external_id", "user_external_id"
        )
        self._private = frozenset((int(guild), int(user)) for guild, user in rows)

    async def keep_loaded(self) -> None:
        """Load now and every `REFRESH_S` until cancelled; a failed read keeps the last set (logged once)."""
        failing = False
        while True:
            try:
                await self.load()
                failing = False
            except Exception as exc:
                if not failing:
                    log.warning(
                        "discord: private-mode members not read (%s); keeping the last %d",
                        exc,
                        len(self._private),
                    )
                failing = True
            await asyncio.sleep(self.REFRESH_S)


def setup(bot: AtelierBot) -> None:
    modes = PrivateModes()
    bot.private_modes = modes  # type: ignore[attr-defined]  # read by launch.private_mode
    # Held on the bot: the loop keeps only a weak reference to a task; asyncio.run cancels it at exit.
    bot.private_modes_task = asyncio.get_running_loop().create_task(modes.keep_loaded())  # type: ignore[attr-defined]
    bot.tree.add_command(settings_command)
    bot.add_dynamic_items(SettingsItem)
