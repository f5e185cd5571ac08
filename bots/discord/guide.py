"""What an admin needs to put the bot on a server: the `atelier discord --help` text and the invite URL.

Kept free of discord.py imports so the CLI can build its help without loading the client.
"""

from __future__ import annotations

import textwrap

SCOPES = ("bot", "applications.commands")

PERMISSIONS = {
    "View Channels": 1 << 10,
    "Send Messages": 1 << 11,
    "Send Messages in Threads": 1 << 38,
    "Create Public Threads": 1 << 35,
    "Embed Links": 1 << 14,
    "Attach Files": 1 << 15,
    "Read Message History": 1 << 16,
    "Add Reactions": 1 << 6,
}
PERMISSIONS_VALUE = sum(PERMISSIONS.values())  # 309237763136


def invite_url(application_id: int | str) -> str:
    """The OAuth2 URL that adds the bot to a server with the scopes and permissions it needs."""
    return (
        f"https://discord.com/oauth2/authorize?client_id={application_id}"
        f"&scope={'+'.join(SCOPES)}&permissions={PERMISSIONS_VALUE}"
    )


def _wrap(text: str) -> str:
    return textwrap.fill(text, width=108, initial_indent="     ", subsequent_indent="     ")


HELP = f"""\
Run Atelier's Discord bot: /imagine in your server, progress in a thread, results with buttons.
Image work happens in `atelier worker` processes; run at least one with the same settings (it needs the
token too, to post progress and results).

Set it up once:
  1. Create an application at https://discord.com/developers/applications (New Application). Its
     Application ID is on the General Information page.
  2. Token: on the Bot page press Reset Token and copy it. Give it to Atelier as ATELIER_DISCORD_TOKEN, or
     write it to a file and set ATELIER_DISCORD_TOKEN_FILE (Docker/Kubernetes secrets). Never commit it; if
     it leaks, reset it there.
  3. Intents: slash commands and buttons need no privileged intent. The bot connects with Guilds and Guild
     Message Reactions, which need no switch. Reacting with 🔍 or ✨ to members' own images needs Message
     Content Intent switched on, on the Bot page (Discord hides their attachments from the bot otherwise).
  4. Invite the bot with this URL (your Application ID in place of APPLICATION_ID; the bot also logs its
     own invite URL when it starts):
       {invite_url("APPLICATION_ID")}
     Scopes: {", ".join(SCOPES)}.
{_wrap(f"Permissions ({PERMISSIONS_VALUE}): {', '.join(PERMISSIONS)}.")}
  5. Start it: `atelier serve` runs this bot and a worker per GPU together (`atelier doctor` first checks
     the token and every service). Or `atelier discord` next to `atelier worker --queues images,train` (the
     train queue runs /atelier lora train), both in the same folder or with the same shared settings.
     Commands are registered globally at start-up, which can take up to an hour to reach every server; set
     ATELIER_DISCORD_GUILD_IDS=ID1,ID2 to register them in those servers only, instantly (right-click a
     server with Developer Mode on to copy its id).

Settings (environment variables):
  ATELIER_DISCORD_TOKEN, ATELIER_DISCORD_TOKEN_FILE   the bot token (required)
  ATELIER_DISCORD_GUILD_IDS      servers to register commands in directly (optional)
  ATELIER_DISCORD_ADMIN_ROLE     role id (not name) that may delete anyone's images and cancel anyone's jobs,
                                 besides members with Manage Server (optional)
  ATELIER_DISCORD_API_BASE       REST base URL (default https://discord.com/api/v10; an API proxy)
  ATELIER_DISCORD_GATEWAY_URL    gateway URL (default wss://gateway.discord.gg/)
  and the shared ATELIER_REDIS_URL, ATELIER_DATABASE_URL, ATELIER_BLOB_URL: the same as the workers'
  (unset: the embedded ones of ATELIER_DATA_DIR, shared by every process started on that folder).
"""
