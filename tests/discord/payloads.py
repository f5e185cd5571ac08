"""Discord JSON shapes the emulator sends: users, guilds, channels, messages and interactions.

Field sets follow Discord's API docs and what discord.py 2.7 reads (see ../shared/PLATFORMS.md): discord.py
needs `application_id`, `version`, `attachment_size_limit`, a `channel` object and `member.flags` on an
interaction, and derives `created_at` (so token expiry) from the snowflake id.
"""

from __future__ import annotations

import itertools
import time
from datetime import UTC, datetime

from bots.discord.guide import PERMISSIONS_VALUE

DISCORD_EPOCH_MS = 1_420_070_400_000
_increment = itertools.count()

# Permission bits.
ADMINISTRATOR = 1 << 3
MANAGE_GUILD = 1 << 5
VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
READ_MESSAGE_HISTORY = 1 << 16
USE_APPLICATION_COMMANDS = 1 << 31
CREATE_PUBLIC_THREADS = 1 << 35
SEND_MESSAGES_IN_THREADS = 1 << 38
MEMBER_PERMISSIONS = VIEW_CHANNEL | SEND_MESSAGES | READ_MESSAGE_HISTORY | USE_APPLICATION_COMMANDS
BOT_PERMISSIONS = PERMISSIONS_VALUE  # the server granted what the invite URL asks for

# Channel types.
GUILD_TEXT, DM, PUBLIC_THREAD = 0, 1, 11


def mint(at: float | None = None) -> int:
    """A snowflake for the time `at` (default now): Discord's epoch-relative milliseconds, shifted by 22."""
    ms = int((time.time() if at is None else at) * 1000) - DISCORD_EPOCH_MS
    return (ms << 22) | (next(_increment) & 0x3FFFFF)


def iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat()


def user(user_id: int, name: str, *, bot: bool = False) -> dict:
    return {
        "id": str(user_id),
        "username": name,
        "global_name": name.title(),
        "discriminator": "0",
        "avatar": None,
        "bot": bot,
        "public_flags": 0,
    }


def member(user_data: dict, *, permissions: int, roles: list[int] = ()) -> dict:  # type: ignore[assignment]
    return {
        "user": user_data,
        "roles": [str(r) for r in roles],
        "joined_at": "2024-01-01T00:00:00+00:00",
        "deaf": False,
        "mute": False,
        "flags": 0,
        "permissions": str(permissions),
        "nick": None,
        "avatar": None,
        "premium_since": None,
        "pending": False,
    }


def text_channel(channel_id: int, guild_id: int, name: str, *, nsfw: bool = False) -> dict:
    """A guild text channel; `nsfw` is Discord's "age-restricted" switch."""
    return {
        "id": str(channel_id),
        "type": GUILD_TEXT,
        "guild_id": str(guild_id),
        "name": name,
        "position": 0,
        "permission_overwrites": [],
        "nsfw": nsfw,
        "parent_id": None,
        "topic": None,
        "last_message_id": None,
        "rate_limit_per_user": 0,
        "flags": 0,
    }


def thread_channel(
    thread_id: int, guild_id: int, parent_id: int, owner_id: int, name: str, at: float
) -> dict:
    return {
        "id": str(thread_id),
        "type": PUBLIC_THREAD,
        "guild_id": str(guild_id),
        "parent_id": str(parent_id),
        "owner_id": str(owner_id),
        "name": name,
        "last_message_id": None,
        "rate_limit_per_user": 0,
        "message_count": 0,
        "member_count": 1,
        "total_message_sent": 0,
        "flags": 0,
        "thread_metadata": {
            "archived": False,
            "auto_archive_duration": 1440,
            "archive_timestamp": iso(at),
            "locked": False,
        },
    }


def role(role_id: int, name: str, permissions: int) -> dict:
    return {
        "id": str(role_id),
        "name": name,
        "permissions": str(permissions),
        "position": 0,
        "color": 0,
        "hoist": False,
        "managed": False,
        "mentionable": False,
        "flags": 0,
    }


def guild(guild_id: int, name: str, owner_id: int, channels: list[dict], roles: list[dict]) -> dict:
    return {
        "id": str(guild_id),
        "name": name,
        "icon": None,
        "owner_id": str(owner_id),
        "roles": roles,
        "emojis": [],
        "stickers": [],
        "features": [],
        "member_count": 3,
        "members": [],
        "channels": channels,
        "threads": [],
        "presences": [],
        "voice_states": [],
        "stage_instances": [],
        "guild_scheduled_events": [],
        "soundboard_sounds": [],
        "large": False,
        "unavailable": False,
        "premium_tier": 0,
        "preferred_locale": "en-US",
        "system_channel_id": None,
        "verification_level": 0,
        "default_message_notifications": 0,
        "explicit_content_filter": 0,
        "mfa_level": 0,
        "nsfw_level": 0,
        "afk_timeout": 300,
        "joined_at": "2024-01-01T00:00:00+00:00",
    }


def application(app_id: int, owner: dict) -> dict:
    return {
        "id": str(app_id),
        "name": "Atelier",
        "description": "",
        "icon": None,
        "bot_public": True,
        "bot_require_code_grant": False,
        "owner": owner,
        "verify_key": "0" * 64,
        "flags": 0,
        "team": None,
    }


def interaction(
    *,
    interaction_id: int,
    app_id: int,
    token: str,
    kind: int,
    data: dict,
    channel: dict,
    actor: dict,
    guild_id: int | None,
    permissions: int,
    roles: list[int] = (),  # type: ignore[assignment]
    attachment_size_limit: int = 10 * 1024 * 1024,
    app_permissions: int = BOT_PERMISSIONS,
    message: dict | None = None,
) -> dict:
    """An INTERACTION_CREATE `d`: in a guild (a member) or a DM (a user)."""
    payload = {
        "id": str(interaction_id),
        "application_id": str(app_id),
        "type": kind,
        "token": token,
        "version": 1,
        "channel": channel,
        "channel_id": channel["id"],
        "app_permissions": str(app_permissions),
        "locale": "en-US",
        "entitlements": [],
        "attachment_size_limit": attachment_size_limit,
        "data": data,
    }
    if guild_id is not None:
        payload |= {
            "guild_id": str(guild_id),
            "guild_locale": "en-US",
            "member": member(actor, permissions=permissions, roles=list(roles)),
            "authorizing_integration_owners": {"0": str(guild_id)},
            "context": 0,
        }
    else:
        payload |= {"user": actor, "authorizing_integration_owners": {"0": str(guild_id or 0)}, "context": 1}
    if message is not None:
        payload["message"] = message
    return payload
