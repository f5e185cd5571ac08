"""`atelier discord --help` tells an admin everything needed to put the bot on a server."""

from __future__ import annotations

import subprocess
import sys

from bots.discord.guide import PERMISSIONS_VALUE


def test_discord_help_covers_application_token_intents_and_invite() -> None:
    shown = subprocess.run(
        [sys.executable, "-m", "atelier", "discord", "--help"], capture_output=True, text=True, check=True
    ).stdout
    shown = " ".join(shown.split())  # wrapped lines
    for needed in (
        "https://discord.com/developers/applications",  # application setup
        "ATELIER_DISCORD_TOKEN",
        "ATELIER_DISCORD_TOKEN_FILE",
        "Intents",
        "Message Content Intent",
        "scope=bot+applications.commands",
        f"permissions={PERMISSIONS_VALUE}",
        "Create Public Threads",
        "ATELIER_DISCORD_GUILD_IDS",
    ):
        assert needed in shown, needed


def test_discord_without_a_token_says_what_to_set() -> None:
    env = {"PATH": "/usr/bin:/bin", "ATELIER_DATA_DIR": "/nonexistent"}
    done = subprocess.run(
        [sys.executable, "-m", "atelier", "discord"], capture_output=True, text=True, env=env, cwd="/"
    )
    assert done.returncode == 2
    assert "ATELIER_DISCORD_TOKEN" in done.stderr
