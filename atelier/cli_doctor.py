"""`atelier doctor`: one screen saying, for the current settings, what is configured and whether it answers.

    atelier doctor      # exit 0 when everything `atelier serve` needs answers, else 1

Rows: Redis (a URL, or the embedded one), the database (and its pending migrations), the blob store (a test
object written, read back and deleted), each chat platform's token (Discord `users/@me`, Slack `auth.test`,
against the configured API base), the device and its memory, and which presets' weights are on this machine.
Each problem gets one `fix:` line. Nothing is changed: migrations are counted, not applied. Tokens are never
printed.
"""

from __future__ import annotations

import argparse

from atelier.settings import Settings


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add the `doctor` command to the `atelier` parser."""
    sub.add_parser(
        "doctor",
        help="check every configured service and token; exit 0 when `atelier serve` can run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


async def _doctor(settings: Settings, args: argparse.Namespace) -> int:
    from atelier.doctor import passed, render, run_checks

    checks = await run_checks(settings)
    print(render(checks))
    return 0 if passed(checks) else 1


COMMANDS = {"doctor": _doctor}
