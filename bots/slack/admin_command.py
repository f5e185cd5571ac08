"""`/atelier tier|quota|usage|pause|resume|ban|unban|safety|review|lora …`: the workspace's quotas, tier, pause, bans and LoRAs.

Only the workspace's admins and owners (`users.info`), the configured admin list and Atelier's operators
(`ATELIER_SLACK_OPERATORS`) may use it, and only on the workspace the command comes from. Workspace admins stay
below the operator's ceilings (`quotas.ceilings`): they may lower limits and choose a self-service tier; raising
limits and other tiers are the operator's, and the refusal says so. Arguments are the CLI's (`quotas.admin_args`, shared with `atelier admin`):
`/atelier quota --images-per-day 20 --clear concurrent-jobs`, `/atelier ban @someone --reason spam`. Every answer,
refusals and mistakes included, is ephemeral: only the admin who typed it sees it. `lora` has its own
module (`lora_command`): it trains, lists and deletes the workspace's LoRAs.
"""

from __future__ import annotations

import logging

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_sdk.web.async_client import AsyncWebClient

from bots.commands import CommandError
from bots.slack import answers, lora_command, review, settings_command
from bots.slack.admins import is_admin
from bots.slack.config import SlackConfig
from bots.slack.services import SlackServices
from quotas.admin_args import ChatArgumentError, check, parse_chat, run_tenant_action

log = logging.getLogger(__name__)

COMMAND = "/atelier"


def refusal(what: str) -> str:
    """Why a member who is not an admin cannot do `what`."""
    return f"Only this workspace's admins and owners (or the admins configured for Atelier) can {what}."


REFUSED = refusal("use `/atelier`")


def register(app: AsyncApp, config: SlackConfig, services: SlackServices) -> None:
    """Add the `/atelier` command to `app`."""

    @app.command(COMMAND)
    async def atelier_command(
        ack: AsyncAck, command: dict, client: AsyncWebClient, respond: AsyncRespond, context: AsyncBoltContext
    ) -> None:
        await ack()
        user = command.get("user_id", "")
        operator = user in config.operators
        text = command.get("text", "")
        first, _, rest = text.strip().partition(" ")
        if first.lower() == "settings":  # anyone's own settings (bots.slack.settings_command)
            await settings_command.open_settings(client, services, command, context)
            return
        if first.lower() == "style":  # list for anyone; add and delete for admins
            admin = operator or await is_admin(client, config.admins, user)
            try:
                answer = await settings_command.style_command(
                    await context["workspace"].tenant(), rest, admin=admin
                )
            except CommandError as exc:
                answer = f":warning: {exc}"
            await answers.tell(respond, answer)
            return
        if not operator and not await is_admin(client, config.admins, user):
            await answers.tell(respond, f":no_entry_sign: {REFUSED}")
            return
        if first.lower() == "review":  # withheld images, with Approve and Delete (bots.slack.review)
            await respond(
                response_type="ephemeral", **await review.review_message(await context["workspace"].tenant())
            )
            return
        if first.lower() == "lora":
            try:
                answer = await lora_command.run(client, services, command, context["workspace"], rest)
            except CommandError as exc:
                answer = f":warning: {exc}"
            await answers.tell(respond, answer)
            return
        try:
            args = parse_chat(COMMAND, text)
            limits, clear = check(args, services.tiers)
            if args.admin_command == "safety" and args.policy and not (args.channel or args.server):
                args.channel = command.get("channel_id")  # a policy typed in a channel is that channel's
        except ChatArgumentError as exc:
            await answers.tell(respond, f"```{exc}```\nLoRAs: {lora_command.USAGE.removeprefix('Usage: ')}")
            return
        except ValueError as exc:
            await answers.tell(respond, f":warning: {exc}")
            return
        tenant = await context["workspace"].tenant()
        try:
            text = await run_tenant_action(services.admin, args, tenant, limits, clear, operator=operator)
        except (ValueError, LookupError, PermissionError) as exc:
            await answers.tell(respond, f":warning: {exc}")
            return
        log.info("slack admin %s on %s: %s", user, tenant, command.get("text", ""))
        await answers.tell(respond, f"```{text}```")
