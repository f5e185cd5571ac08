"""`/atelier settings` (anyone: a modal with their own defaults, remix mode, private mode and lane (jobs.relax) in
this workspace)
and `/atelier style add|list|delete` (list: anyone; add and delete: admins), the Slack side of `storage.settings`.

The modal's fields are selects, so nothing typed can be wrong; its submission stores the choices at once.
"""

from __future__ import annotations

import shlex

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.async_context import AsyncBoltContext
from slack_sdk.web.async_client import AsyncWebClient

from bots.commands import CommandError
from bots.slack import modals
from bots.slack.services import SlackServices
from jobs.styles import BUILT_IN, check_style
from storage.settings import MemberSettings, TenantStyle, settings_for, tenant_styles, update_settings

MODAL = "atelier_settings"
DEFAULT = "default"
ASPECTS = ("1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3", "21:9")
STEP_CHOICES = (4, 10, 20, 30, 40, 50)
LANE_CHOICES = {
    "auto": "auto: fast while the fast budget lasts, then relax",
    "relax": "relax: always the relax lane",
    "fast": "fast: refused once the fast budget is spent",
}
STYLE_USAGE = 'Usage: `/atelier style add NAME "TEMPLATE with {prompt}" ["NEGATIVE"]`, `style list`, `style delete NAME`'


async def settings_modal(services: SlackServices, tenant, settings: MemberSettings | None) -> dict:
    """The settings modal, with the member's current choices selected."""
    styles = sorted({*BUILT_IN, *(await tenant_styles(tenant))})

    def select(field: str, label: str, values: list[str], current: str) -> dict:
        options = [(DEFAULT, f"{label}: default")] + [(value, value) for value in values[:99]]
        return modals.select_input(field, label, options, current or DEFAULT)

    return modals.modal(
        MODAL,
        "Your Atelier settings",
        "Save",
        [
            select("model", "Model", services.registry.names("txt2img"), settings.model if settings else ""),
            select("aspect", "Aspect", list(ASPECTS), settings.aspect if settings else ""),
            select(
                "steps",
                "Steps",
                [str(steps) for steps in STEP_CHOICES],
                str(settings.steps) if settings and settings.steps else "",
            ),
            select("style", "Style", styles, settings.style if settings else ""),
            modals.select_input(
                "remix",
                "Remix: edit the prompt before vary, reroll, pan and zoom",
                [("off", "off"), ("on", "on")],
                "on" if settings and settings.remix else "off",
            ),
            modals.select_input(
                "private",
                "Private: results only for you, never in the channel",
                [("off", "off"), ("on", "on")],
                "on" if settings and settings.private else "off",
            ),
            modals.select_input(
                "lane",
                "Lane",
                list(LANE_CHOICES.items()),
                (settings.lane if settings else "") or "auto",
                hint="relax runs on idle GPU time and is not charged against your fast budget",
            ),
        ],
        {},
    )


def chosen_settings(view: dict) -> dict:
    """The modal's choices as `update_settings` fields."""

    def value(field: str) -> str:
        chosen = modals.selected(view, field) or DEFAULT
        return "" if chosen == DEFAULT else chosen

    steps = value("steps")
    return {
        "model": value("model"),
        "aspect": value("aspect"),
        "steps": int(steps) if steps.isdigit() else None,
        "style": value("style"),
        "remix": value("remix") == "on",
        "private": value("private") == "on",
        "lane": value("lane") if value("lane") in ("relax", "fast") else "",
    }


async def style_command(tenant, rest: str, *, admin: bool) -> str:
    """`/atelier style add|list|delete …`: the answer to show (CommandError for a mistake)."""
    try:
        words = shlex.split(rest)
    except ValueError as exc:
        raise CommandError(f"could not read that: {exc}. {STYLE_USAGE}") from None
    verb = words[0].lower() if words else "list"
    if verb == "list":
        own = await tenant_styles(tenant)
        lines = [f"• `{s.name}`: {s.prompt}" for s in own.values()]
        built_in = ", ".join(f"`{name}`" for name in BUILT_IN)
        return (
            "\n".join([*lines, f"Built in: {built_in}"])
            if lines
            else f"No styles of this workspace yet. Built in: {built_in}"
        )
    if not admin:
        raise CommandError(
            "Only this workspace's admins can add or delete styles; `/atelier style list` shows them."
        )
    if verb == "add" and len(words) in (3, 4):
        try:
            style = check_style(words[1], words[2], words[3] if len(words) == 4 else "")
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        await TenantStyle.update_or_create(
            defaults={"prompt": style.prompt, "negative": style.negative}, tenant=tenant, name=style.name
        )
        return f"Style `{style.name}` saved: use `--style {style.name}`."
    if verb == "delete" and len(words) == 2:
        deleted = await TenantStyle.filter(tenant=tenant, name=words[1].lower()).delete()
        if not deleted:
            raise CommandError(f"this workspace has no style {words[1][:40]!r}")
        return f"Style `{words[1].lower()}` deleted."
    raise CommandError(STYLE_USAGE)


def register(app: AsyncApp, services: SlackServices) -> None:
    """Add the settings modal's submission to `app` (the command itself is `/atelier settings`)."""

    @app.view(MODAL)
    async def settings_submitted(ack: AsyncAck, view: dict, body: dict, context: AsyncBoltContext) -> None:
        await ack()
        tenant = await context["workspace"].tenant()
        await update_settings(tenant, body["user"]["id"], **chosen_settings(view))


async def open_settings(client: AsyncWebClient, services: SlackServices, command: dict, context) -> None:
    """`/atelier settings`: the modal, opened on the command's trigger."""
    workspace = context["workspace"]
    settings = await settings_for("slack", workspace.team_id, command.get("user_id", ""))
    view = await settings_modal(services, await workspace.tenant(), settings)
    await client.views_open(trigger_id=command["trigger_id"], view=view)
