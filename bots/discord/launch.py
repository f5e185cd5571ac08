"""Start a job from an interaction: defer, record and enqueue, open the thread, show the queue position.

Used by every command that starts a job, and by the buttons that start one. The deferred response becomes the job's status message (the
worker edits it through the interaction token, then through the bot token once that expires). A refusal at
admission (a quota, a paused server, a ban) withdraws the public "thinking…" message and answers ephemerally:
nothing was enqueued or charged. The thread is started from the status message so progress and results stay
together; its id is the message's (Discord gives a thread started from a message that message's id), so the
job's address is known before the thread exists. Where no thread can be made (inside a thread, no permission)
results go next to the status message.

Each interaction's outcome is counted here (`metering`): `started` once its job is enqueued, `refused` by
`refuse` and `withdraw`, `error` when starting failed on our side; a failed post of the bot's own is counted too.

The position and Cancel button are written after enqueueing, in the message's next edit slot, and only while the
job has not ended: the worker's edits share the slots (see `editclock`), so this edit never lands on top of the
worker's final word.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import discord

from bots.discord.cancel import cancel_view
from bots.discord.metering import outcome
from bots.discord.safety import age_restricted
from bots.discord.status import queued_text, running_text
from bots.discord.target import DEFAULT_ATTACHMENT_LIMIT, DiscordTarget
from bots.metrics import counted_post
from bots.outage import outage_message
from jobs.queue import Enqueued, enqueue, job_id_for
from jobs.specs import Enhance, Imagine, Inpaint, ReplyTarget, Upscale, Vary
from quotas.errors import QuotaRefused
from storage.models import Job, JobStatus, Tenant, User, get_or_create_tenant, get_or_create_user
from storage.settings import member_lane

if TYPE_CHECKING:
    from bots.discord.client import AtelierBot

log = logging.getLogger(__name__)

THREAD_NAME_CHARS = 90

Spec = Imagine | Vary | Inpaint | Upscale | Enhance
THREAD_ARCHIVE_MINUTES = 1440


async def defer_status(interaction: discord.Interaction[AtelierBot]) -> int:
    """Acknowledge within Discord's 3 s with a public "thinking…" message; return that message's id, once the
    other deferrals of a burst have gone out too (`Acknowledger.settled`). For a member in private mode
    (`/settings`) the message is ephemeral, and so is everything the job posts."""
    acks = interaction.client.acks
    if private_mode(interaction):
        interaction.extras["private"] = True
        callback = await interaction.response.defer(thinking=True, ephemeral=True)
        message_id = (
            callback.message_id
            if callback is not None and callback.message_id is not None
            else (await interaction.original_response()).id
        )
    else:
        message_id = await acks.defer_thinking(interaction)
    await acks.settled()
    return message_id


def private_mode(interaction: discord.Interaction) -> bool:
    """Whether the member asked for private results in this server, from the bot's copy (`settings.PrivateModes`:
    this runs before the 3 s acknowledgement, which waits for no database)."""
    modes = getattr(interaction.client, "private_modes", None)
    return (
        interaction.guild_id is not None
        and modes is not None
        and modes.is_private(interaction.guild_id, interaction.user.id)
    )


class Refused(Exception):
    """A request turned away after the deferral for a reason the asker can act on; `str()` says it."""


Submit = Callable[[Tenant, User, str, ReplyTarget], Awaitable[Enqueued]]
"""Records and enqueues a job for (tenant, user, request id, reply target); raises QuotaRefused or Refused."""


async def start_job(
    interaction: discord.Interaction[AtelierBot], message_id: int, spec: Spec, *, title: str
) -> None:
    """Record and enqueue `spec` on the image queue; `title` heads its status message and names its thread."""
    await start(interaction, message_id, _submitter(interaction, spec), title=title)


def _submitter(interaction: discord.Interaction[AtelierBot], spec: Spec) -> Submit:
    bot = interaction.client

    async def submit(tenant: Tenant, user: User, request_id: str, reply_target: ReplyTarget) -> Enqueued:
        # --relax / --fast in the prompt (`imagine`), else the member's /settings lane (jobs.relax)
        lane = interaction.extras.get("lane") or await member_lane(
            "discord", str(interaction.guild_id), str(interaction.user.id)
        )
        return await enqueue(
            bot.config.redis,
            spec,
            request_id=request_id,
            reply_target=reply_target,
            queue_name=bot.config.queue_name,
            tenant=tenant,
            user=user,
            tiers=bot.config.tiers,
            lane=lane,
        )

    return submit


async def defer_then_start(
    interaction: discord.Interaction[AtelierBot], make_spec: Callable[[], Awaitable[Spec]], *, title: str
) -> None:
    """For a request whose spec needs slow work (downloading attachments, reading the server's LoRAs or the
    member's defaults): defer first, then build it; a ValueError from `make_spec` withdraws the deferral with its
    text, else the job starts. Building it is admission work: it waits its turn with the rest (`admissions`)."""
    message_id = await defer_status(interaction)
    async with interaction.client.admissions:
        try:
            spec = await make_spec()
        except ValueError as exc:
            await withdraw(interaction, str(exc))
            return
        except Exception:  # e.g. the member's defaults unread: the database is away
            await _not_started(interaction)
            return
        await _admit(interaction, message_id, _submitter(interaction, spec), title=title)


async def start(
    interaction: discord.Interaction[AtelierBot], message_id: int, submit: Submit, *, title: str
) -> None:
    """Start a job with `submit` for this interaction, its status message `message_id` (the deferred response):
    a refusal withdraws that message for an ephemeral answer; else the thread opens and the position shows."""
    async with interaction.client.admissions:
        await _admit(interaction, message_id, submit, title=title)


async def _admit(
    interaction: discord.Interaction[AtelierBot], message_id: int, submit: Submit, *, title: str
) -> None:
    request_id = f"discord:interaction:{interaction.id}"
    try:
        guild = interaction.guild
        tenant = await get_or_create_tenant("discord", str(interaction.guild_id), guild.name if guild else "")
        user = await get_or_create_user(tenant, str(interaction.user.id), interaction.user.name)
        private = bool(interaction.extras.get("private"))
        in_thread = threads_allowed(interaction) and not private
        target = DiscordTarget(
            application_id=interaction.application_id,
            interaction_id=interaction.id,
            token=interaction.token,
            channel_id=interaction.channel_id,  # type: ignore[arg-type]  # always set for a guild command
            message_id=message_id,
            user_id=interaction.user.id,
            guild_id=interaction.guild_id,
            thread_id=message_id if in_thread else None,
            attachment_size_limit=interaction.filesize_limit or DEFAULT_ATTACHMENT_LIMIT,
            prompt=title,
            age_restricted=age_restricted(interaction.channel),
            private=private,
        )
        try:
            queued = await submit(
                tenant, user, request_id, ReplyTarget(platform="discord", data=target.to_data())
            )
        except (QuotaRefused, Refused) as refusal:
            await withdraw(interaction, str(refusal))
            return
        outcome(interaction, "started")
        if in_thread:
            await _open_thread(interaction, message_id, title)
        await _show_queued(interaction, message_id, title, queued)
    except Exception:
        await _not_started(interaction)


async def _not_started(interaction: discord.Interaction[AtelierBot]) -> None:
    """After the deferral, starting failed on our side: say so in place of the "thinking…" message (called from
    an `except` block; an outage of the database or Redis gets its own words, see `bots.outage`)."""
    job_id = job_id_for(f"discord:interaction:{interaction.id}")
    if outage := await outage_message(interaction.client.config.redis):
        log.warning("discord: interaction %s refused during an outage: %s", interaction.id, outage)
        await withdraw(interaction, outage)
        return
    outcome(interaction, "error")
    log.exception("discord: interaction %s (job %s) could not be started", interaction.id, job_id)
    with counted_post("discord"):
        await interaction.edit_original_response(
            content=f"❌ Something went wrong on our side. Reference: {job_id}", view=None
        )


async def refuse(interaction: discord.Interaction, message: str) -> None:
    """The interaction's first response: an ephemeral ❌ for the asker alone (nothing was deferred)."""
    outcome(interaction, "refused")
    with counted_post("discord"):
        await interaction.response.send_message(f"❌ {sentence(message)}", ephemeral=True)


def sentence(message: str) -> str:
    """`message` with a capital first letter, unless it starts with a name (`photo.png is …`, `--seed …`)."""
    first_word = message.split(" ", 1)[0]
    return message[:1].upper() + message[1:] if first_word.isalpha() else message


async def withdraw(interaction: discord.Interaction, message: str) -> None:
    """Replace the public "thinking…" message with an ephemeral answer for the asker alone."""
    outcome(interaction, "refused")
    with counted_post("discord"), contextlib.suppress(discord.NotFound):
        await interaction.delete_original_response()
    with counted_post("discord"):
        await interaction.followup.send(f"❌ {message}", ephemeral=True)


def threads_allowed(interaction: discord.Interaction) -> bool:
    """A text or announcement channel where the bot may start a public thread and post in it."""
    channel = interaction.channel
    if channel is None or channel.type not in (discord.ChannelType.text, discord.ChannelType.news):
        return False
    permissions = interaction.app_permissions
    return permissions.create_public_threads and permissions.send_messages_in_threads


async def _open_thread(interaction: discord.Interaction, message_id: int, prompt: str) -> None:
    name = prompt if len(prompt) <= THREAD_NAME_CHARS else prompt[: THREAD_NAME_CHARS - 1] + "…"
    try:
        await interaction.channel.get_partial_message(message_id).create_thread(  # type: ignore[union-attr]
            name=name, auto_archive_duration=THREAD_ARCHIVE_MINUTES
        )
    except discord.HTTPException as exc:
        # The worker finds the thread missing and posts next to the status message instead.
        log.info("discord: no thread for interaction %s (%s); results go to the channel", interaction.id, exc)


async def _show_queued(
    interaction: discord.Interaction[AtelierBot], message_id: int, prompt: str, queued: Enqueued
) -> None:
    async with interaction.client.clock.turn(message_id):
        statuses = await Job.filter(id=queued.job_id).values_list("status", flat=True)
        status = statuses[0] if statuses else None
        if status == JobStatus.QUEUED:
            content = queued_text(prompt, queued.position, queued.eta_s, queued.lane)
        elif status == JobStatus.RUNNING:
            content = running_text(prompt, queued.lane)
        else:
            return  # it already ended: the worker's final edit stands
        with counted_post("discord"):
            await interaction.edit_original_response(content=content, view=cancel_view(queued.job_id))
