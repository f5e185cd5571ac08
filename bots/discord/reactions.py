"""Reactions: 🔍 on any message with an image (the bot's or a member's) upscales it, ✨ restores its faces.

The emoji are per server: an admin's `/atelier emoji upscale|faces EMOJI` (stored in the server's preferences)
replaces the default for that action, `/atelier emoji upscale|faces reset:True` brings it back.

The gateway's MESSAGE_REACTION_ADD carries ids only, so the message is fetched over REST and its first image
downloaded at once (CDN URLs expire), checked and stored. There is no interaction, hence no token: the bot
posts a status message as a reply to the reacted-to message, the worker edits it with the bot token, and the
result replies to the reacted-to message. The request id names channel, message, member and emoji, so the same
reaction added twice (or the gateway replaying it) makes one job. A message without an image is ignored; an image
that cannot be used gets a short reply saying why.

Admission's preconditions (`quotas.ledger.precheck`: a pause, a ban, the queue cap, a limit already reached) are
checked before the message is read, anything downloaded or anything posted. A reaction has no interaction, so
no answer can be private: a banned member's reaction is dropped with a log line and nothing else (answering would
let them post in the channel by reacting again); any other refusal is answered in the channel once per member and
server every REFUSAL_QUIET_S, and dropped with a log line in between. A refusal at enqueueing (the atomic check,
which a concurrent request can still trip) edits the status message as before.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord
from PIL import Image as PILImage

from bots.discord.cancel import cancel_view
from bots.discord.inputs import first_image, input_image
from bots.discord.safety import age_restricted
from bots.discord.status import queued_text, running_text
from bots.discord.target import DiscordTarget
from bots.metrics import Tally, counted_post
from jobs.queue import enqueue, job_id_for
from jobs.specs import Enhance, ReplyTarget, Upscale, enhance_spec, upscale_spec
from quotas.errors import QuotaRefused, UserBanned
from quotas.ledger import precheck
from storage.models import Job, JobStatus, Tenant, User, get_or_create_tenant, get_or_create_user
from storage.preferences import preferences_of

if TYPE_CHECKING:
    from bots.discord.client import AtelierBot

log = logging.getLogger(__name__)

REFUSAL_QUIET_S = (
    600  # after answering a member's refused reaction, how long further ones are dropped quietly
)

UPSCALE_EMOJI = "🔍"
FACES_EMOJI = "✨"
TITLES = {"upscale": "Upscale", "faces": "Enhanced faces"}


async def action_for(bot: AtelierBot, guild_id: int, emoji: str) -> str | None:
    """`upscale`, `faces` or None for an emoji: the server's own choice (`/atelier emoji`, its preferences),
    else the bot's configured one (🔍 and ✨ by default). A server that chose another emoji for an action no
    longer answers to the default one for it."""
    tenant = await Tenant.get_or_none(platform="discord", external_id=str(guild_id))
    chosen = await preferences_of(tenant) if tenant is not None else None
    emojis = {
        (chosen.upscale_emoji if chosen else "") or bot.config.upscale_emoji: "upscale",
        (chosen.faces_emoji if chosen else "") or bot.config.faces_emoji: "faces",
    }
    return emojis.get(emoji)


def request_id_for(payload: discord.RawReactionActionEvent) -> str:
    return f"discord:reaction:{payload.channel_id}:{payload.message_id}:{payload.user_id}:{payload.emoji}"


async def on_reaction(bot: AtelierBot, payload: discord.RawReactionActionEvent, tally: Tally) -> None:
    """Start an upscale or face restoration of the reacted-to message's image (see the module's docstring);
    `tally` counts it as `started` or `refused` (a reaction that means nothing here counts nothing)."""
    if payload.guild_id is None or (bot.user and payload.user_id == bot.user.id):
        return
    action = await action_for(bot, payload.guild_id, str(payload.emoji))
    if action is None:
        return
    request_id = request_id_for(payload)
    if await Job.exists(id=job_id_for(request_id)):
        return  # the same reaction again: one job
    guild = bot.get_guild(payload.guild_id)
    tenant = await get_or_create_tenant("discord", str(payload.guild_id), guild.name if guild else "")
    member = payload.member
    user = await get_or_create_user(tenant, str(payload.user_id), member.name if member else "")
    try:
        await precheck(tenant, user, bot.config.tiers)
    except QuotaRefused as refusal:
        tally.say("refused")
        await _refuse(bot, payload, refusal)
        return
    try:
        message = await bot.http.get_message(payload.channel_id, payload.message_id)
    except discord.HTTPException as exc:
        log.info("discord: reaction on message %s: cannot read it (%s)", payload.message_id, exc)
        return
    ref = first_image(message)  # type: ignore[arg-type]
    if ref is None:
        return
    channel = bot.get_partial_messageable(payload.channel_id, guild_id=payload.guild_id)
    reply_to = discord.MessageReference(
        message_id=payload.message_id, channel_id=payload.channel_id, fail_if_not_exists=False
    )
    mention = f"<@{payload.user_id}>"
    try:
        image, key = await input_image(bot.config.blobs, ref)
        spec = _spec(bot, action, image, key)
    except ValueError as exc:
        tally.say("refused")
        with counted_post("discord"):
            await channel.send(f"❌ {mention} {exc}", reference=reply_to, mention_author=False)
        return
    title = f"{TITLES[action]} of {ref.filename}"
    with counted_post("discord"):
        status = await channel.send(
            f"⏳ {mention} {title}: queued…", reference=reply_to, mention_author=False
        )
    await _start(bot, payload, request_id, spec, status, title, tally, tenant, user)


async def _refuse(bot: AtelierBot, payload: discord.RawReactionActionEvent, refusal: QuotaRefused) -> None:
    """A reaction refused before anything was fetched: see the module's docstring for who hears of it."""
    who = f"member {payload.user_id} of guild {payload.guild_id}"
    if isinstance(refusal, UserBanned):
        log.info("discord: reaction by banned %s on message %s: dropped", who, payload.message_id)
        return
    quiet_key = f"atelier:reaction-refused:discord:{payload.guild_id}:{payload.user_id}"
    if not await bot.config.redis.set(quiet_key, 1, nx=True, ex=REFUSAL_QUIET_S):
        log.info("discord: reaction by %s refused again (%s): dropped", who, refusal)
        return
    channel = bot.get_partial_messageable(payload.channel_id, guild_id=payload.guild_id)
    reply_to = discord.MessageReference(
        message_id=payload.message_id, channel_id=payload.channel_id, fail_if_not_exists=False
    )
    with counted_post("discord"):
        await channel.send(f"❌ <@{payload.user_id}> {refusal}", reference=reply_to, mention_author=False)


async def _start(
    bot: AtelierBot,
    payload: discord.RawReactionActionEvent,
    request_id: str,
    spec: Upscale | Enhance,
    status: discord.Message,
    title: str,
    tally: Tally,
    tenant: Tenant,
    user: User,
) -> None:
    target = DiscordTarget(
        application_id=bot.application_id,  # type: ignore[arg-type]
        interaction_id=status.id,  # no interaction: the status message's id dates the (absent) token
        token="",
        channel_id=payload.channel_id,
        message_id=status.id,
        user_id=payload.user_id,
        guild_id=payload.guild_id,
        prompt=title,
        reply_to=payload.message_id,
        age_restricted=age_restricted(await _channel(bot, payload.channel_id)),
    )
    try:
        queued = await enqueue(
            bot.config.redis,
            spec,
            request_id=request_id,
            reply_target=ReplyTarget(platform="discord", data=target.to_data()),
            queue_name=bot.config.queue_name,
            tenant=tenant,
            user=user,
            tiers=bot.config.tiers,
        )
    except QuotaRefused as refusal:
        tally.say("refused")
        with counted_post("discord"):
            await status.edit(content=f"❌ <@{payload.user_id}> {refusal}")
        return
    tally.say("started")
    async with bot.clock.turn(status.id):
        statuses = await Job.filter(id=queued.job_id).values_list("status", flat=True)
        state = statuses[0] if statuses else None
        if state == JobStatus.QUEUED:
            content = queued_text(title, queued.position, queued.eta_s)
        elif state == JobStatus.RUNNING:
            content = running_text(title)
        else:
            return  # it already ended: the worker's final edit stands
        with counted_post("discord"):
            await status.edit(content=content, view=cancel_view(queued.job_id))


async def _channel(bot: AtelierBot, channel_id: int) -> object | None:
    """The channel (or thread) reacted in, from the cache or Discord; None when it cannot be read."""
    cached = bot.get_channel(channel_id)
    if cached is not None:
        return cached
    try:
        return await bot.fetch_channel(channel_id)
    except discord.HTTPException:
        return None


def _spec(bot: AtelierBot, action: str, image: PILImage.Image, key: str) -> Upscale | Enhance:
    registry, tiny = bot.config.registry, bot.config.tiny_models
    if action == "upscale":
        return upscale_spec(registry, image=image, tiny=tiny, image_key=key)
    return enhance_spec(registry, image=image, tiny=tiny, image_key=key)
