"""The arguments of the tenant admin actions (tier, quota, usage, pause, resume, ban, unban, safety, emoji),
parsed and run the same way for every front-end: the CLI's `atelier admin ACTION TENANT …` and the chat bots'
`/atelier ACTION …`, where the tenant is the workspace the command comes from.

Parsing is argparse, so both take the same flags (`--images-per-day 3`, `--clear images-per-day`, `--period`,
`--reason`). Everything checkable without the database is checked by `check`, before anything changes; the
answers `run_tenant_action` returns are the lines both print.
"""

from __future__ import annotations

import argparse
import re
import shlex
from typing import TYPE_CHECKING, NoReturn

from quotas import admin_safety
from quotas.tiers import LIMIT_NAMES, Tiers, parse_limit

if TYPE_CHECKING:  # the CLI builds its parser from this module at every start: keep it free of the database
    from quotas.admin import Admin, TenantRef

TENANT_ACTIONS = ("tier", "quota", "usage", "pause", "resume", "ban", "unban", "safety", "emoji")

LIMIT_FLAGS = {
    "images_per_day": "images a day for the whole tenant",
    "gpu_seconds_per_month": "GPU seconds a month for the whole tenant",
    "images_per_user_per_day": "images a day for each person",
    "gpu_seconds_per_user_per_month": "GPU seconds a month for each person (their fast budget)",
    "queued_jobs_per_user": "unfinished (queued or running) jobs for each person",
    "concurrent_jobs": "unfinished jobs for the whole tenant",
}

_MENTION = re.compile(r"^<@!?([A-Za-z0-9]+)(?:\|[^>]*)?>$")


def user_id(text: str) -> str:
    """A user id as given, or taken out of a chat mention (`<@U123|ana>`, `<@!123>`)."""
    match = _MENTION.match(text.strip())
    return match[1] if match else text.strip()


def add_tenant_actions(commands: argparse._SubParsersAction, *, tenant: bool) -> None:
    """Add the tenant actions to `commands`; with `tenant`, each takes the tenant (`PLATFORM:ID`) first."""
    tenant_help = "PLATFORM:ID, e.g. discord:1234 or slack:T0123"

    def action(name: str, text: str) -> argparse.ArgumentParser:
        parser = commands.add_parser(name, help=text, description=text)
        if tenant:
            parser.add_argument("tenant", help=tenant_help)
        return parser

    tier = action("tier", "show or set the tier")
    tier.add_argument(
        "tier",
        nargs="?",
        help="the tier to set (free, standard, priority, or one configured); in a chat, only a self-service tier "
        "unless you are one of Atelier's operators",
    )

    quota = action("quota", "show, set or clear the limits and timezone")
    for name, what in LIMIT_FLAGS.items():
        quota.add_argument(f"--{name.replace('_', '-')}", dest=name, metavar="N", help=f"limit on {what}")
    quota.add_argument("--timezone", help="IANA timezone whose midnight resets daily and monthly limits")
    quota.add_argument(
        "--clear",
        action="append",
        default=[],
        metavar="LIMIT",
        help="return a limit to the tier's default (e.g. images-per-day; 'all' for every one); repeatable",
    )

    usage = action("usage", "usage per user and model in a period")
    usage.add_argument(
        "--period", default="today", help="today, month, YYYY-MM-DD or YYYY-MM (default: today)"
    )

    action("pause", "hold the queue and refuse new requests")
    action("resume", "undo pause")

    for name, text in (("ban", "refuse a user's requests"), ("unban", "lift a ban")):
        parser = action(name, text)
        parser.add_argument("user", type=user_id, help="the platform's user id (or a mention)")
        if name == "ban":
            parser.add_argument("--reason", default="", help="kept with the ban, for other admins")

    safety = action(
        "safety",
        "show or set the safety filter: on (default), images the model's safety checker flags are posted only "
        "in age-restricted channels, as spoilers, and withheld elsewhere; off, posted like any other; "
        "--policy per channel, the prompt word list and the review log (quotas.admin_safety)",
    )
    admin_safety.add_arguments(safety)

    emoji = action("emoji", "show or set the reactions that upscale an image or restore its faces")
    emoji.add_argument("reaction", nargs="?", help="which reaction to set: upscale or faces")
    emoji.add_argument("emoji", nargs="?", help="the emoji (or Slack reaction name); leave out with --reset")
    emoji.add_argument("--reset", action="store_true", help="back to the default emoji")


def clear_names(values: list[str]) -> list[str]:
    """`--clear` values as limit names (`images-per-day` → `images_per_day`; `all` → every one)."""
    names = [v.replace("-", "_") for v in values]
    if "all" in names:
        return list(LIMIT_NAMES)
    for name in names:
        if name not in LIMIT_NAMES:
            raise ValueError(
                f"unknown limit {name.replace('_', '-')!r}: choose one of "
                f"{', '.join(n.replace('_', '-') for n in LIMIT_NAMES)} or all"
            )
    return names


def check(args: argparse.Namespace, tiers: Tiers) -> tuple[dict[str, int], list[str]]:
    """Check a parsed tenant action without touching the database; return the limits to set and to clear.
    A problem is a ValueError saying what to fix."""
    if args.admin_command == "tier" and args.tier is not None:
        tiers.get(args.tier)
    if args.admin_command == "safety":
        admin_safety.check_arguments(args)
    if args.admin_command == "emoji":
        if args.reaction is None and (args.emoji or args.reset):
            raise ValueError("name the reaction to set: upscale or faces")
        if args.reaction not in (None, "upscale", "faces"):
            raise ValueError(f"unknown reaction {args.reaction!r}: choose upscale or faces")
        if args.reaction is not None and bool(args.emoji) == args.reset:
            raise ValueError(f"give the emoji for {args.reaction}, or --reset for the default (not both)")
    if args.admin_command != "quota":
        return {}, []
    limits = {n: parse_limit(n, getattr(args, n)) for n in LIMIT_NAMES if getattr(args, n) is not None}
    clear = clear_names(args.clear)
    if args.timezone is not None:
        from quotas.periods import zone

        zone(args.timezone)
    return limits, clear


async def run_tenant_action(
    admin: Admin,
    args: argparse.Namespace,
    tenant: TenantRef,
    limits: dict[str, int],
    clear: list[str],
    *,
    operator: bool,
) -> str:
    """Carry out a checked tenant action on `tenant`; return what to show (the policy, usage or outcome).

    `operator` says who asks: Atelier's operator (the CLI, a configured operator id) or only a chat admin, whose
    tier and limits stay under the operator's ceilings (`quotas.ceilings`; a refusal is `OperatorOnly`, raised
    before anything changes)."""
    action = args.admin_command
    name = str(tenant)
    if action == "tier":
        if not args.tier:
            return (await admin.policy(tenant)).describe()
        return (await admin.set_tier(tenant, args.tier, by_operator=operator)).describe()
    if action == "quota":
        if limits and not operator:
            await admin.check_limits(tenant, limits, cleared=clear)
        if clear:
            await admin.clear_limits(tenant, *clear)
        if args.timezone is not None:
            await admin.set_timezone(tenant, args.timezone)
        if limits:
            await admin.set_limits(tenant, by_operator=operator, **limits)
        return (await admin.policy(tenant)).describe()
    if action == "usage":
        return (await admin.usage(tenant, args.period)).describe()
    if action == "pause":
        return f"{name}: paused; {await admin.pause(tenant)} queued jobs held"
    if action == "resume":
        return f"{name}: resumed; {await admin.resume(tenant)} held jobs back in the queue"
    if action == "ban":
        await admin.ban(tenant, args.user, reason=args.reason)
        return f"{name}: user {args.user} banned"
    if action == "unban":
        lifted = await admin.unban(tenant, args.user)
        return f"{name}: user {args.user} {'unbanned' if lifted else 'was not banned'}"
    if action == "safety":
        return await admin_safety.run(tenant, name, args)
    if action == "emoji":
        if args.reaction is not None:
            await admin.set_emoji(tenant, args.reaction, "" if args.reset else args.emoji)
        prefs = await admin.preferences(tenant)
        shown = {r: getattr(prefs, f"{r}_emoji") or "the default" for r in ("upscale", "faces")}
        return f"{name}: react with {shown['upscale']} to upscale, {shown['faces']} to restore faces"
    raise ValueError(f"unknown admin action {action!r}: choose one of {', '.join(TENANT_ACTIONS)}")


class ChatArgumentError(ValueError):
    """A chat admin command that does not parse; the message is argparse's, with the usage to follow."""


class _ChatParser(argparse.ArgumentParser):
    """argparse that raises instead of printing and exiting, for commands typed in a chat."""

    def error(self, message: str) -> NoReturn:
        # argparse quotes the word it refused whole: cut it, so the answer fits a chat message
        shown = message if len(message) <= 300 else message[:299] + "…"
        raise ChatArgumentError(f"{shown}\n{self.format_usage()}")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        raise ChatArgumentError(message or self.format_usage())

    def print_help(self, file: object = None) -> None:
        raise ChatArgumentError(self.format_help())


def chat_parser(prog: str) -> argparse.ArgumentParser:
    """The parser of a chat's admin command (`prog` is its name, e.g. `/atelier`): the tenant is implied."""
    parser = _ChatParser(prog=prog, add_help=True)
    commands = parser.add_subparsers(dest="admin_command", required=True, metavar="ACTION")
    add_tenant_actions(commands, tenant=False)
    return parser


def parse_chat(prog: str, text: str) -> argparse.Namespace:
    """Parse what someone typed after `prog`. Chat clients may turn `--` into a dash (—): it is read as `--`.
    Raises ChatArgumentError with the usage (or the help, for `help` and `-h`)."""
    text = text.replace("\u2014", "--").replace("\u2013", "--").strip()
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise ChatArgumentError(f"{exc} (check the quotes)") from None
    if not words or words[0] == "help":
        words = ["--help"]
    return chat_parser(prog).parse_args(words)
