"""`/atelier tier|quota|usage|pause|resume|ban|unban|safety|emoji|queue`: the server's tier, limits, pause, bans,
safety filter and reaction emoji (`/atelier lora …` is in `lora_admin`).

The admin actions are for members with Manage Server (or Administrator) or the configured admin role, and for
Atelier's operators (`ATELIER_DISCORD_OPERATORS`); everyone else gets an ephemeral refusal and nothing changes.
A server's admins run it below the operator's ceilings (`quotas.ceilings`): they may lower limits and choose a
self-service tier; raising limits and other tiers are the operator's, and the refusal says so. Typed options are turned into the words of the shared admin
parser (`quotas.admin_args`, the CLI's `atelier admin` and Slack's `/atelier`), so all three check and run them
the same way, on the server the command comes from. `/atelier queue` is for everyone: the caller's own jobs
here and where each stands in the queue. Every answer is ephemeral.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands

from bots.discord.permissions import is_admin
from jobs.queue_status import queue_position
from quotas.admin_args import ChatArgumentError, chat_parser, check, run_tenant_action
from storage.moderation import POLICIES

if TYPE_CHECKING:
    from bots.discord.client import AtelierBot

log = logging.getLogger(__name__)

PROG = "/atelier"
REFUSED = (
    "Only members with the Manage Server permission (or the server's Atelier admin role) can use "
    "`/atelier {action}`."
)
MAX_CONTENT = 2000
MAX_LIMIT = 10**9
LIMIT = app_commands.Range[int, 0, MAX_LIMIT]

group = app_commands.Group(
    name="atelier", description="Atelier on this server: queue, tier, limits, pause, bans", guild_only=True
)


def tenant_of(interaction: discord.Interaction) -> str:
    """The tenant a command acts on: the server it was typed in."""
    return f"discord:{interaction.guild_id}"


def quota_words(values: dict[str, int | None], timezone: str | None, clear: str | None) -> list[str]:
    """`/atelier quota` options as the shared parser's words (`--images-per-day 3 --clear concurrent-jobs`)."""
    words = ["quota"]
    for name, value in values.items():
        if value is not None:
            words += [f"--{name.replace('_', '-')}", str(value)]
    if timezone:
        words += ["--timezone", timezone]
    for name in (clear or "").replace(",", " ").split():
        words += ["--clear", name]
    return words


def is_operator(interaction: discord.Interaction[AtelierBot]) -> bool:
    """Whether the caller is one of Atelier's operators (ATELIER_DISCORD_OPERATORS), whatever the server."""
    return str(interaction.user.id) in interaction.client.config.operators


async def admin_only(interaction: discord.Interaction[AtelierBot], action: str) -> bool:
    """True for an admin or an operator; for anyone else, answer the ephemeral refusal (as the first response)
    and say False."""
    if is_admin(interaction, interaction.client.config.admin_role) or is_operator(interaction):
        return True
    await _answer(interaction, "🚫 " + REFUSED.format(action=action))
    return False


async def run_action(interaction: discord.Interaction[AtelierBot], words: list[str]) -> None:
    """Refuse a non-admin; else parse `words` with the shared parser, run the action, show its answer."""
    if not await admin_only(interaction, words[0]):
        return
    admin = interaction.client.admin
    try:
        args = chat_parser(PROG).parse_args(words)
        limits, clear = check(args, admin.tiers)
    except ChatArgumentError as exc:
        await _answer(interaction, _block(str(exc)))
        return
    except ValueError as exc:
        await _answer(interaction, f"⚠️ {exc}")
        return
    await interaction.response.defer(ephemeral=True, thinking=True)
    try:
        text = await run_tenant_action(
            admin, args, tenant_of(interaction), limits, clear, operator=is_operator(interaction)
        )
    except (ValueError, LookupError, PermissionError) as exc:
        await interaction.edit_original_response(content=f"⚠️ {exc}")
        return
    log.info("discord admin %s on %s: %s", interaction.user.id, tenant_of(interaction), " ".join(words))
    await interaction.edit_original_response(content=_block(text))


@group.command(name="tier", description="Show this server's tier, or set it (admins)")
@app_commands.describe(tier="The tier to set: free, standard, priority or one configured")
async def tier_command(interaction: discord.Interaction[AtelierBot], tier: str | None = None) -> None:
    await run_action(interaction, ["tier", *([tier] if tier else [])])


@group.command(name="quota", description="Show, set or clear this server's limits (admins)")
@app_commands.describe(
    images_per_day="Images a day for the whole server",
    gpu_seconds_per_month="GPU seconds a month for the whole server",
    images_per_user_per_day="Images a day for each member",
    queued_jobs_per_user="Unfinished jobs for each member",
    concurrent_jobs="Unfinished jobs for the whole server",
    timezone="IANA timezone whose midnight resets the limits, e.g. Europe/Paris",
    clear="Limits to return to the tier's default, e.g. images-per-day (or all)",
)
async def quota_command(
    interaction: discord.Interaction[AtelierBot],
    images_per_day: LIMIT | None = None,
    gpu_seconds_per_month: LIMIT | None = None,
    images_per_user_per_day: LIMIT | None = None,
    queued_jobs_per_user: LIMIT | None = None,
    concurrent_jobs: LIMIT | None = None,
    timezone: str | None = None,
    clear: str | None = None,
) -> None:
    values = {
        "images_per_day": images_per_day,
        "gpu_seconds_per_month": gpu_seconds_per_month,
        "images_per_user_per_day": images_per_user_per_day,
        "queued_jobs_per_user": queued_jobs_per_user,
        "concurrent_jobs": concurrent_jobs,
    }
    await run_action(interaction, quota_words(values, timezone, clear))


@group.command(name="usage", description="This server's usage per member and model (admins)")
@app_commands.describe(period="today, month, YYYY-MM-DD or YYYY-MM")
async def usage_command(interaction: discord.Interaction[AtelierBot], period: str = "today") -> None:
    await run_action(interaction, ["usage", "--period", period])


@group.command(name="pause", description="Hold this server's queue and refuse new requests (admins)")
async def pause_command(interaction: discord.Interaction[AtelierBot]) -> None:
    await run_action(interaction, ["pause"])


@group.command(name="resume", description="Undo /atelier pause (admins)")
async def resume_command(interaction: discord.Interaction[AtelierBot]) -> None:
    await run_action(interaction, ["resume"])


@group.command(name="ban", description="Refuse a member's requests (admins)")
@app_commands.describe(
    user="The member: a mention or a user id", reason="Kept with the ban, for other admins"
)
async def ban_command(
    interaction: discord.Interaction[AtelierBot], user: str, reason: str | None = None
) -> None:
    await run_action(interaction, ["ban", user, *(["--reason", reason] if reason else [])])


@group.command(name="unban", description="Lift a ban (admins)")
@app_commands.describe(user="The member: a mention or a user id")
async def unban_command(interaction: discord.Interaction[AtelierBot], user: str) -> None:
    await run_action(interaction, ["unban", user])


@group.command(name="safety", description="Safety: the filter, this channel's policy, prompt words (admins)")
@app_commands.describe(
    state="on: flagged images only in age-restricted channels, as spoilers; off: posted normally",
    policy="What flagged images do in this channel (or the server, with server): allow, spoiler, "
    "age-restricted, withhold",
    server="Set the policy as the server's default instead of this channel's",
    add_word="Refuse prompts with this word",
    add_pattern="Refuse prompts matching this regular expression",
    remove="Stop refusing this word or pattern",
    words="List the words and patterns this server refuses",
    review_log="The latest review decisions and who made them",
)
@app_commands.choices(
    state=[app_commands.Choice(name=v, value=v) for v in ("on", "off")],
    policy=[app_commands.Choice(name=v, value=v) for v in POLICIES],
)
async def safety_command(
    interaction: discord.Interaction[AtelierBot],
    state: str | None = None,
    policy: str | None = None,
    server: bool = False,
    add_word: str | None = None,
    add_pattern: str | None = None,
    remove: str | None = None,
    words: bool = False,
    review_log: bool = False,
) -> None:
    """The shared parser's `safety` words: the policy is for the channel typed in unless `server`."""
    argv = ["safety", *([state] if state else [])]
    if policy:
        argv += ["--policy", policy] + ([] if server else ["--channel", str(interaction.channel_id)])
    for flag, value in (("--add-word", add_word), ("--add-pattern", add_pattern), ("--remove", remove)):
        if value:
            argv += [flag, value]
    argv += (["--words"] if words else []) + (["--review-log"] if review_log else [])
    await run_action(interaction, argv)


@group.command(name="emoji", description="Show or set the reactions that upscale or restore faces (admins)")
@app_commands.describe(
    reaction="Which reaction to set: upscale or faces",
    emoji="The emoji that starts it from now on",
    reset="Back to the default emoji (🔍 upscale, ✨ faces)",
)
@app_commands.choices(reaction=[app_commands.Choice(name=v, value=v) for v in ("upscale", "faces")])
async def emoji_command(
    interaction: discord.Interaction[AtelierBot],
    reaction: str | None = None,
    emoji: str | None = None,
    reset: bool = False,
) -> None:
    words = ["emoji", *([reaction] if reaction else []), *([emoji.strip()] if emoji else [])]
    await run_action(interaction, words + (["--reset"] if reset else []))


@group.command(name="queue", description="Your unfinished jobs on this server and where they stand")
async def queue_command(interaction: discord.Interaction[AtelierBot]) -> None:
    await interaction.response.defer(ephemeral=True, thinking=True)
    bot = interaction.client
    lines = []
    for status in ("running", "queued"):
        jobs = await bot.admin.jobs(tenant_of(interaction), status=status, user=str(interaction.user.id))
        for job in reversed(jobs):  # oldest first
            queue = bot.config.train_queue_name if job.kind == "train_lora" else bot.config.queue_name
            position, eta = await queue_position(bot.config.redis, queue, job.id)
            lines.append(f"`{job.id}` {job.kind} ({job.model}): {_where(status, position, eta)}")
    text = "\n".join(lines) if lines else "You have no queued or running jobs on this server."
    await interaction.edit_original_response(content=_fit(text))


def _where(status: str, position: int | None, eta: float | None) -> str:
    if status == "running" or position == 0:
        return "running" + (f", done in about {eta:.0f} s" if eta is not None else "")
    if position is None:
        return "held (the server is paused)"
    return f"position {position}" + (f", done in about {eta:.0f} s" if eta is not None else "")


def _block(text: str) -> str:
    return f"```\n{_fit(text, MAX_CONTENT - 8)}\n```"


def _fit(text: str, limit: int = MAX_CONTENT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


async def _answer(interaction: discord.Interaction, text: str) -> None:
    await interaction.response.send_message(_fit(text), ephemeral=True)


def setup(bot: AtelierBot) -> None:
    bot.tree.add_command(group)
