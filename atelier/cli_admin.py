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
    atelier admin apikey create|list|revoke discord:1234  # keys of the HTTP API (`atelier api`)
    atelier admin retention discord:1234 --images 30 --inputs forever  # how long data is kept (docs/retention.md)
    atelier admin retention discord:1234 --clear images   # back to the default (ATELIER_RETENTION_IMAGES_DAYS)

Input is checked before any service opens: a bad tenant, tier, limit or timezone exits with status 2 and one
line saying what to fix.
"""

from __future__ import annotations

import argparse

from atelier.cli import UsageError
from atelier.settings import Settings
from quotas.admin_args import add_tenant_actions


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add the `admin` command and its subcommands to the `atelier` parser."""
    admin = sub.add_parser(
        "admin",
        help="quotas, tiers, pauses, bans and jobs of a tenant (a Discord guild, a Slack workspace)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = admin.add_subparsers(dest="admin_command", required=True, metavar="ACTION")
    add_tenant_actions(commands, tenant=True)  # tier, quota, usage, pause, resume, ban, unban
    tenant_help = "PLATFORM:ID, e.g. discord:1234 or slack:T0123"

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

    retention = commands.add_parser(
        "retention",
        help="show (no options) or set how many days a tenant's images, inputs and training data are kept",
    )
    retention.add_argument("tenant", help=tenant_help)
    for kind in ("images", "inputs", "training"):
        retention.add_argument(f"--{kind}", metavar="DAYS", help="days to keep, or 'forever'")
    retention.add_argument(
        "--clear",
        action="append",
        default=[],
        metavar="KIND",
        help="back to the default: images, inputs or training",
    )

    from bots.api.keys import add_apikey_parser

    add_apikey_parser(commands)


async def _admin(settings: Settings, args: argparse.Namespace) -> int:
    if args.admin_command == "apikey":
        return await _apikey(settings, args)
    if args.admin_command == "retention":
        return await _retention(settings, args)
    from quotas.admin_args import check
    from quotas.policy import parse_tenant_ref

    # Check everything checkable before any service opens.
    try:
        tiers = settings.load_tiers()
        if getattr(args, "tenant", None) is not None:
            parse_tenant_ref(args.tenant)
        limits, clear = check(args, tiers)
    except ValueError as exc:
        raise UsageError(exc) from None

    from atelier.runtime import Runtime
    from quotas.admin import Admin

    async with Runtime.open(settings) as runtime:
        admin = Admin(runtime.redis, settings.queue_name, tiers, train_queue_name=settings.train_queue_name)
        try:
            print(await _run(admin, args, limits, clear))
        except (ValueError, LookupError, PermissionError) as exc:
            raise UsageError(exc) from None
    return 0


async def _run(admin, args: argparse.Namespace, limits: dict[str, int], clear: list[str]) -> str:  # -> Admin
    from quotas.admin_args import TENANT_ACTIONS, run_tenant_action

    action = args.admin_command
    if action in TENANT_ACTIONS:
        # The terminal is the operator's: no ceiling applies (quotas.ceilings).
        return await run_tenant_action(admin, args, args.tenant, limits, clear, operator=True)
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


def retention_changes(args: argparse.Namespace) -> dict[str, int]:
    """The periods `atelier admin retention` was given, as days (forever: 0); ValueError naming a bad one."""
    from jobs.retention import check_days

    days: dict[str, int] = {}
    for kind in ("images", "inputs", "training"):
        raw = getattr(args, kind)
        if raw is None:
            continue
        value = 0 if raw.strip().lower() == "forever" else None
        if value is None:
            try:
                value = int(raw)
            except ValueError:
                raise ValueError(f"--{kind} takes a number of days or 'forever' (got {raw!r})") from None
            if value == 0:
                raise ValueError(f"--{kind} 0 would keep nothing: give 1 or more days, or 'forever'")
        days[kind] = check_days(kind, value)
    for kind in args.clear:
        check_days(kind, 0)
        if kind in days:
            raise ValueError(f"--{kind} and --clear {kind} contradict each other: give one")
    return days


async def _retention(settings: Settings, args: argparse.Namespace) -> int:
    from jobs.retention import retention_of, set_retention
    from quotas.policy import parse_tenant_ref
    from storage.db import close_db, init_db
    from storage.models import Tenant, get_or_create_tenant

    try:
        platform, external_id = parse_tenant_ref(args.tenant)
        days = retention_changes(args)
    except ValueError as exc:
        raise UsageError(exc) from None
    defaults = settings.retention_days()
    await init_db(settings.database_url)
    try:
        if days or args.clear:
            tenant = await get_or_create_tenant(platform, external_id)
            now = await set_retention(tenant, defaults, days, args.clear)
        else:
            tenant = await Tenant.get_or_none(platform=platform, external_id=external_id)
            now = await retention_of(None if tenant is None else tenant.id, defaults)
        print(f"{args.tenant} keeps {now.describe()}")
    finally:
        await close_db()
    return 0


async def _apikey(settings: Settings, args: argparse.Namespace) -> int:
    from bots.api.keys import run_apikey
    from quotas.policy import parse_tenant_ref
    from storage.db import close_db, init_db

    try:
        parse_tenant_ref(args.tenant)
    except ValueError as exc:
        raise UsageError(exc) from None
    await init_db(settings.database_url)
    try:
        print(await run_apikey(args))
    except (ValueError, LookupError) as exc:
        raise UsageError(exc) from None
    finally:
        await close_db()
    return 0


COMMANDS = {"admin": _admin}
