"""`atelier admin …`: quotas, tiers, pauses, bans and jobs from a terminal, through `quotas.admin.Admin` (the
same API the chat bots use).

    atelier admin tier discord:1234 priority          # show (no TIER) or set the tier
    atelier admin quota discord:1234 --images-per-day 3 --timezone Europe/Paris
    atelier admin quota discord:1234 --clear images-per-day      # back to the tier's default
    atelier admin usage discord:1234 --period 2025-05
    atelier admin pause|resume discord:1234
    atelier admin ban|unban discord:1234 USER_ID
    atelier admin jobs discord:1234 --status queued
    atelier admin cancel JOB_ID
    atelier admin queue                                # the queue per tier and model

Input is checked before any service opens: a bad tenant, tier, limit or timezone exits with status 2 and one
line saying what to fix.
"""

from __future__ import annotations

import argparse

from atelier.cli import UsageError
from atelier.settings import Settings

_LIMIT_FLAGS = {
    "images_per_day": "images a day for the whole tenant",
    "gpu_seconds_per_month": "GPU seconds a month for the whole tenant",
    "images_per_user_per_day": "images a day for each person",
    "queued_jobs_per_user": "unfinished (queued or running) jobs for each person",
    "concurrent_jobs": "unfinished jobs for the whole tenant",
}


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add the `admin` command and its subcommands to the `atelier` parser."""
    admin = sub.add_parser(
        "admin",
        help="quotas, tiers, pauses, bans and jobs of a tenant (a Discord guild, a Slack workspace)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = admin.add_subparsers(dest="admin_command", required=True, metavar="ACTION")
    tenant_help = "PLATFORM:ID, e.g. discord:1234 or slack:T0123"

    tier = commands.add_parser("tier", help="show or set a tenant's tier")
    tier.add_argument("tenant", help=tenant_help)
    tier.add_argument("tier", nargs="?", help="the tier to set (free, standard, priority, or one configured)")

    quota = commands.add_parser("quota", help="show, set or clear a tenant's limits and timezone")
    quota.add_argument("tenant", help=tenant_help)
    for name, what in _LIMIT_FLAGS.items():
        quota.add_argument(f"--{name.replace('_', '-')}", dest=name, metavar="N", help=f"limit on {what}")
    quota.add_argument("--timezone", help="IANA timezone whose midnight resets daily and monthly limits")
    quota.add_argument(
        "--clear",
        action="append",
        default=[],
        metavar="LIMIT",
        help="return a limit to the tier's default (e.g. images-per-day; 'all' for every one); repeatable",
    )

    usage = commands.add_parser("usage", help="usage per user and model in a period")
    usage.add_argument("tenant", help=tenant_help)
    usage.add_argument(
        "--period", default="today", help="today, month, YYYY-MM-DD or YYYY-MM (default: today)"
    )

    for name, text in (("pause", "hold a tenant's queue and refuse its requests"), ("resume", "undo pause")):
        commands.add_parser(name, help=text).add_argument("tenant", help=tenant_help)

    for name, text in (("ban", "refuse a user's requests"), ("unban", "lift a ban")):
        p = commands.add_parser(name, help=text)
        p.add_argument("tenant", help=tenant_help)
        p.add_argument("user", help="the platform's user id")
        if name == "ban":
            p.add_argument("--reason", default="", help="kept with the ban, for other admins")

    jobs = commands.add_parser("jobs", help="a tenant's recent jobs, newest first")
    jobs.add_argument("tenant", help=tenant_help)
    jobs.add_argument(
        "--status", help="only jobs in this state (queued, running, succeeded, failed, cancelled)"
    )
    jobs.add_argument("--user", help="only this user's jobs")
    jobs.add_argument("--limit", type=int, default=20, help="how many (default: 20)")

    cancel = commands.add_parser("cancel", help="cancel a queued or running job (refunded)")
    cancel.add_argument("job_id")

    commands.add_parser("queue", help="the queue per tier and model")


async def _admin(settings: Settings, args: argparse.Namespace) -> int:
    from quotas.policy import parse_tenant_ref
    from quotas.tiers import LIMIT_NAMES, Tiers, parse_limit

    # Check everything checkable before any service opens.
    try:
        tiers = Tiers.load(settings.tiers_file)
        if getattr(args, "tenant", None) is not None:
            parse_tenant_ref(args.tenant)
        if args.admin_command == "tier" and args.tier is not None:
            tiers.get(args.tier)
        limits, clear = {}, []
        if args.admin_command == "quota":
            limits = {
                n: parse_limit(n, getattr(args, n)) for n in LIMIT_NAMES if getattr(args, n) is not None
            }
            clear = _clear_names(args.clear)
            if args.timezone is not None:
                from quotas.periods import zone

                zone(args.timezone)
    except ValueError as exc:
        raise UsageError(exc) from None

    from atelier.runtime import Runtime
    from quotas.admin import Admin

    async with Runtime.open(settings) as runtime:
        admin = Admin(runtime.redis, settings.queue_name, tiers)
        try:
            print(await _run(admin, args, limits, clear))
        except (ValueError, LookupError, PermissionError) as exc:
            raise UsageError(exc) from None
    return 0


async def _run(admin, args: argparse.Namespace, limits: dict[str, int], clear: list[str]) -> str:  # -> Admin
    action = args.admin_command
    if action == "tier":
        policy = await (admin.set_tier(args.tenant, args.tier) if args.tier else admin.policy(args.tenant))
        return policy.describe()
    if action == "quota":
        if clear:
            await admin.clear_limits(args.tenant, *clear)
        if args.timezone is not None:
            await admin.set_timezone(args.tenant, args.timezone)
        if limits:
            await admin.set_limits(args.tenant, **limits)
        return (await admin.policy(args.tenant)).describe()
    if action == "usage":
        return (await admin.usage(args.tenant, args.period)).describe()
    if action == "pause":
        return f"{args.tenant}: paused; {await admin.pause(args.tenant)} queued jobs held"
    if action == "resume":
        return f"{args.tenant}: resumed; {await admin.resume(args.tenant)} held jobs back in the queue"
    if action == "ban":
        await admin.ban(args.tenant, args.user, reason=args.reason)
        return f"{args.tenant}: user {args.user} banned"
    if action == "unban":
        lifted = await admin.unban(args.tenant, args.user)
        return f"{args.tenant}: user {args.user} {'unbanned' if lifted else 'was not banned'}"
    if action == "jobs":
        rows = await admin.jobs(args.tenant, status=args.status, user=args.user, limit=args.limit)
        return "\n".join(row.describe() for row in rows) or "no jobs"
    if action == "cancel":
        outcome = await admin.cancel_job(args.job_id, as_admin=True)
        return f"{outcome.job_id}: {outcome.outcome} ({outcome.message})"
    from jobs.queue_status import queue_status

    lines = await queue_status(admin.redis, admin.queue_name)
    rows = [
        f"{x.tier:<10} {x.model:<16} {x.queued:>6} queued {x.running:>3} running  ~{x.gpu_seconds:.0f} GPU s"
        for x in lines
    ]
    return "\n".join(rows) or "the queue is empty"


def _clear_names(values: list[str]) -> list[str]:
    from quotas.tiers import LIMIT_NAMES

    names = [v.replace("-", "_") for v in values]
    if "all" in names:
        return list(LIMIT_NAMES)
    for name in names:
        if name not in LIMIT_NAMES:
            raise ValueError(
                f"unknown limit {name.replace('_', '-')!r}: choose one of {', '.join(n.replace('_', '-') for n in LIMIT_NAMES)} or all"
            )
    return names


COMMANDS = {"admin": _admin}
