"""Admission and settlement: reserve a job's cost atomically, then settle what it used or refund it, once.

`reserve` runs one transaction: it claims the job id (a reservation row; a second reserve for the same job finds
it and reserves nothing), then raises each usage counter with one conditional UPDATE (`... SET used = used + n
WHERE ... AND used <= limit - n`). An UPDATE that matches no row means the limit would be passed: the transaction
rolls back and nothing is reserved. PostgreSQL re-checks the WHERE on the locked row, so concurrent admissions
queue on the counter row and can never over-admit; SQLite runs one writing transaction at a time. Counters are
always touched in the same order, so concurrent transactions cannot deadlock.

`settle` and `refund` close a reservation: a conditional UPDATE from `open` lets exactly one of them win, in the
same transaction as the counter changes and the ledger entry (whose unique (job_id, phase) is a second guard). A
job that runs twice therefore settles once, and a cancelled job that still ran is refunded or settled, not both.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from tortoise.exceptions import IntegrityError
from tortoise.expressions import F
from tortoise.transactions import in_transaction

from quotas.errors import QuotaExceeded, TenantPaused, UserBanned
from quotas.periods import day_key, month_key, next_day, next_month, utcnow
from quotas.policy import Policy, policy_for
from quotas.tiers import LIMIT_LABELS, Tiers
from storage.db import CONNECTION_NAME
from storage.models import Tenant, User
from storage.quota_models import (
    LedgerKind,
    QuotaCounter,
    QuotaLedger,
    QuotaReservation,
    ReservationState,
    UserBan,
)

IMAGES, GPU_MS, IN_FLIGHT = "images", "gpu_ms", "in_flight"
TENANT_SCOPE = "tenant"


def user_scope(user_id: int) -> str:
    return f"user:{user_id}"


@dataclass(frozen=True)
class Admission:
    """A job admitted against its tenant's quota: the tier it runs at and the GPU time reserved for it.
    `created` is False when the job had been admitted before (nothing new was reserved)."""

    job_id: str
    tier: str
    weight: float
    gpu_ms: int
    created: bool


@dataclass(frozen=True)
class _Charge:
    scope: str
    metric: str
    period: str
    amount: int
    limit_name: str
    limit: int | None  # in the counter's unit (GPU milliseconds for GPU time)
    resets_at: datetime | None


class _Refused(Exception):
    def __init__(self, charge: _Charge) -> None:
        self.charge = charge


async def reserve(
    job_id: str,
    *,
    tenant: Tenant,
    user: User | None,
    model: str,
    images: int,
    gpu_ms: int,
    tiers: Tiers,
    now: datetime | None = None,
) -> Admission:
    """Admit job `job_id` for `tenant` (and `user`), reserving `images` and `gpu_ms` (an estimate) plus one
    unfinished job. Raises QuotaExceeded naming the limit, TenantPaused or UserBanned; reserves nothing then."""
    now = now or utcnow()
    policy = await policy_for(tenant, tiers)
    if policy.paused:
        raise TenantPaused()
    if user is not None and await UserBan.exists(user_id=user.id):
        raise UserBanned()
    charges = _charges(policy, user, images, gpu_ms, now)
    await _ensure_counters(tenant, charges)
    day, month = day_key(now, policy.timezone), month_key(now, policy.timezone)
    try:
        async with in_transaction(CONNECTION_NAME) as conn:
            await QuotaReservation.create(
                job_id=job_id,
                tenant=tenant,
                user=user,
                tier=policy.tier.name,
                model=model,
                images=images,
                gpu_ms=gpu_ms,
                day=day,
                month=month,
                using_db=conn,
            )
            for charge in charges:
                query = QuotaCounter.filter(
                    tenant_id=tenant.id, scope=charge.scope, metric=charge.metric, period=charge.period
                )
                if charge.limit is not None:
                    query = query.filter(used__lte=charge.limit - charge.amount)
                if await query.using_db(conn).update(used=F("used") + charge.amount) == 0:
                    raise _Refused(charge)
            await _append(
                conn,
                LedgerKind.RESERVE,
                job_id,
                tenant.id,
                user and user.id,
                model,
                images,
                gpu_ms,
                day,
                month,
            )
    except IntegrityError:
        existing = await QuotaReservation.get_or_none(job_id=job_id)
        if existing is None:
            raise
        return Admission(job_id, existing.tier, policy.tier.weight, existing.gpu_ms, created=False)
    except _Refused as refused:
        raise await _exceeded(tenant, refused.charge) from None
    return Admission(job_id, policy.tier.name, policy.tier.weight, gpu_ms, created=True)


async def settle(job_id: str, *, gpu_seconds: float, images: int) -> bool:
    """Charge job `job_id` what it used instead of what was reserved; False if it was already closed (settled or
    refunded) or never reserved."""
    return await _close(job_id, LedgerKind.SETTLE, used=(images, round(gpu_seconds * 1000)))


async def refund(job_id: str) -> bool:
    """Give back everything job `job_id` reserved; False if it was already closed or never reserved."""
    return await _close(job_id, LedgerKind.REFUND, used=None)


async def _close(job_id: str, kind: LedgerKind, used: tuple[int, int] | None) -> bool:
    state = ReservationState.SETTLED if kind == LedgerKind.SETTLE else ReservationState.REFUNDED
    async with in_transaction(CONNECTION_NAME) as conn:
        claimed = (
            await QuotaReservation.filter(job_id=job_id, state=ReservationState.OPEN)
            .using_db(conn)
            .update(state=state, closed_at=utcnow())
        )
        if not claimed:
            return False
        r = await QuotaReservation.get(job_id=job_id).using_db(conn)
        images, gpu_ms = (used[0] - r.images, used[1] - r.gpu_ms) if used else (-r.images, -r.gpu_ms)
        changes = [
            (TENANT_SCOPE, IMAGES, r.day, images),
            (TENANT_SCOPE, GPU_MS, r.month, gpu_ms),
            (TENANT_SCOPE, IN_FLIGHT, "", -1),
        ]
        if r.user_id is not None:  # type: ignore[attr-defined]
            scope = user_scope(r.user_id)  # type: ignore[attr-defined]
            changes += [(scope, IMAGES, r.day, images), (scope, IN_FLIGHT, "", -1)]
        for scope, metric, period, amount in changes:
            await (
                QuotaCounter.filter(tenant_id=r.tenant_id, scope=scope, metric=metric, period=period)  # type: ignore[attr-defined]
                .using_db(conn)
                .update(used=F("used") + amount)
            )
        await _append(conn, kind, job_id, r.tenant_id, r.user_id, r.model, images, gpu_ms, r.day, r.month)  # type: ignore[attr-defined]
    return True


def _charges(policy: Policy, user: User | None, images: int, gpu_ms: int, now: datetime) -> list[_Charge]:
    """What admitting one job adds to each counter, in the fixed order every transaction uses."""
    tz, limits = policy.timezone, policy.limits
    day, month = day_key(now, tz), month_key(now, tz)
    tomorrow, next_first = next_day(now, tz), next_month(now, tz)
    gpu_limit = None if limits.gpu_seconds_per_month is None else limits.gpu_seconds_per_month * 1000
    charges = [
        _Charge(TENANT_SCOPE, IMAGES, day, images, "images_per_day", limits.images_per_day, tomorrow),
        _Charge(TENANT_SCOPE, GPU_MS, month, gpu_ms, "gpu_seconds_per_month", gpu_limit, next_first),
        _Charge(TENANT_SCOPE, IN_FLIGHT, "", 1, "concurrent_jobs", limits.concurrent_jobs, None),
    ]
    if user is not None:
        scope = user_scope(user.id)
        charges += [
            _Charge(
                scope,
                IMAGES,
                day,
                images,
                "images_per_user_per_day",
                limits.images_per_user_per_day,
                tomorrow,
            ),
            _Charge(scope, IN_FLIGHT, "", 1, "queued_jobs_per_user", limits.queued_jobs_per_user, None),
        ]
    return charges


async def _ensure_counters(tenant: Tenant, charges: Iterable[_Charge]) -> None:
    """Create the counter rows the charges need (INSERT … ON CONFLICT DO NOTHING), outside the transaction."""
    rows = [QuotaCounter(tenant=tenant, scope=c.scope, metric=c.metric, period=c.period) for c in charges]
    await QuotaCounter.bulk_create(rows, ignore_conflicts=True)


async def _exceeded(tenant: Tenant, charge: _Charge) -> QuotaExceeded:
    used = await QuotaCounter.get(
        tenant_id=tenant.id, scope=charge.scope, metric=charge.metric, period=charge.period
    ).values_list("used", flat=True)
    scale = 1000 if charge.metric == GPU_MS else 1
    assert charge.limit is not None
    return QuotaExceeded(
        limit_name=charge.limit_name,
        label=LIMIT_LABELS[charge.limit_name],
        used=used / scale,
        limit=charge.limit / scale,
        needed=charge.amount / scale,
        resets_at=charge.resets_at,
    )


async def _append(
    conn,
    kind: LedgerKind,
    job_id: str,
    tenant_id: int,
    user_id: int | None,
    model: str,
    images: int,
    gpu_ms: int,
    day: str,
    month: str,
) -> None:
    await QuotaLedger.create(
        job_id=job_id,
        tenant_id=tenant_id,
        user_id=user_id,
        model=model,
        kind=kind,
        phase="open" if kind == LedgerKind.RESERVE else "close",
        images=images,
        gpu_ms=gpu_ms,
        day=day,
        month=month,
        using_db=conn,
    )


async def audit(tenant: Tenant) -> list[str]:
    """Every way the tenant's counters disagree with its ledger (empty when the books balance): a counter's
    usage must equal the sum of the ledger's changes for its scope and period, and the unfinished-job gauges the
    number of reservations still open."""
    problems: list[str] = []
    entries = await QuotaLedger.filter(tenant_id=tenant.id).values(
        "user_id", "kind", "images", "gpu_ms", "day", "month"
    )
    expected: dict[tuple[str, str, str], int] = {}
    for e in entries:
        scopes = [TENANT_SCOPE] + ([user_scope(e["user_id"])] if e["user_id"] is not None else [])
        for scope in scopes:
            expected[(scope, IMAGES, e["day"])] = expected.get((scope, IMAGES, e["day"]), 0) + e["images"]
            step = 1 if e["kind"] == LedgerKind.RESERVE else -1
            expected[(scope, IN_FLIGHT, "")] = expected.get((scope, IN_FLIGHT, ""), 0) + step
        key = (TENANT_SCOPE, GPU_MS, e["month"])
        expected[key] = expected.get(key, 0) + e["gpu_ms"]
    counters = await QuotaCounter.filter(tenant_id=tenant.id).values("scope", "metric", "period", "used")
    actual = {(c["scope"], c["metric"], c["period"]): c["used"] for c in counters}
    for key in sorted(set(expected) | set(actual)):
        if expected.get(key, 0) != actual.get(key, 0):
            problems.append(f"{'/'.join(key)}: counter {actual.get(key, 0)}, ledger {expected.get(key, 0)}")
    open_count = await QuotaReservation.filter(tenant_id=tenant.id, state=ReservationState.OPEN).count()
    if open_count != actual.get((TENANT_SCOPE, IN_FLIGHT, ""), 0):
        problems.append(
            f"open reservations {open_count}, in-flight counter {actual.get((TENANT_SCOPE, IN_FLIGHT, ''), 0)}"
        )
    return problems
